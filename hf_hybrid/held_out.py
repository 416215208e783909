"""What a trained model is measured on: its calibration (temperature, multi-label thresholds) fitted on the
validation split, and its report on the test split.
"""

import logging

import numpy as np

from .calibration import (
    GLOBAL,
    PER_LABEL,
    TEMPERATURE,
    UNTUNED,
    choose_deep_weight,
    clear_calibration,
    fit_temperature,
    probabilities,
    tune_thresholds,
)
from .errors import UserError
from .evaluation import CALIBRATION_METRICS, MULTI_LABEL_METRICS, evaluation_report, metrics_table, report_text

logger = logging.getLogger(__name__)


def calibrate(trainer, validation, method: str, threshold_tuning: str = UNTUNED) -> dict:
    """Fits the model's calibration on the validation split (every process takes part in the prediction and fits
    the same values) and stores it in the config; returns what it fitted, on how many papers, and the validation
    split's calibration scores before and after.

    With a wide branch, the deep part's weight in the sum of the two (`deep_weight`) is chosen first: the one of
    least validation log-loss (each at its own temperature), or of a multi-label model the one whose decisions
    score the best validation F1 (`choose_deep_weight`), so the deep part's correction is kept only as far as the
    validation papers say it helps. The temperature is kept only where it does not make the validation split's
    expected calibration error worse (else 1.0, and the result says so). A multi-label model then has its decision
    thresholds tuned on the calibrated probabilities (`threshold_tuning`, stored in the config), and the result also
    holds the thresholds each way of tuning gives (`thresholds`) with their validation scores."""
    config = trainer.model.config
    clear_calibration(config)
    config.deep_weight = 1.0
    # The wide branch's logits are kept apart (they are ignored at inference otherwise) to weigh the deep part.
    shown = [key for key in config.keys_to_ignore_at_inference if key != "wide_logits"]
    raw = trainer.predict(validation, metric_key_prefix="validation", ignore_keys=shown)
    logits, wide = raw.predictions if isinstance(raw.predictions, tuple) else (raw.predictions, None)
    if not np.isfinite(logits).all():
        raise UserError(
            "the trained model gives NaN or infinite scores on the validation split (training diverged): "
            f"train again with a lower --learning_rate than {trainer.args.learning_rate}"
        )
    result = {"method": method, "validation_papers": len(raw.label_ids)}
    if wide is not None:
        criterion = "deep_weight_f1" if config.is_multi_label else "deep_weight_log_loss"
        config.deep_weight, result[criterion] = choose_deep_weight(
            logits - wide, wide, raw.label_ids, fit_temperatures=method == TEMPERATURE
        )
        logits = config.deep_weight * (logits - wide) + wide
        result["deep_weight"] = config.deep_weight
    if method == TEMPERATURE:
        config.calibration_temperature = fit_temperature(logits, raw.label_ids)
    temperature = config.calibration_temperature
    label_names = [config.id2label[i] for i in range(config.num_labels)]

    def calibration_scores(temperature):
        return {
            stage: calibration_summary(evaluation_report(raw.label_ids, scores, label_names))
            for stage, scores in (("before", logits), ("after", logits / temperature))
        }

    scores = calibration_scores(temperature)
    ece = {stage: scores[stage]["expected_calibration_error"] for stage in scores}
    if ece["after"] > ece["before"]:
        # Fitted on few papers, a temperature can lower their log-loss and still calibrate them worse.
        logger.warning(
            "the temperature %.4f would raise the validation ECE from %.4f to %.4f: keeping 1.0",
            temperature,
            ece["before"],
            ece["after"],
        )
        result["temperature_declined"] = temperature
        config.calibration_temperature = temperature = 1.0
        scores = calibration_scores(temperature)
    logger.info(
        "calibration (%s, %d validation papers): deep part's weight %s, temperature %.4f; validation ECE %.4f -> "
        "%.4f, log-loss %.4f -> %.4f",
        method,
        len(raw.label_ids),
        result.get("deep_weight", "n/a"),
        temperature,
        scores["before"]["expected_calibration_error"],
        scores["after"]["expected_calibration_error"],
        scores["before"]["log_loss"],
        scores["after"]["log_loss"],
    )
    result.update(temperature=temperature, validation=scores)
    if not config.is_multi_label:
        return result
    calibrated = probabilities(logits / temperature, multi_label=True)
    candidates = {
        UNTUNED: [0.5] * config.num_labels,
        GLOBAL: tune_thresholds(calibrated, raw.label_ids, per_label=False),
        PER_LABEL: tune_thresholds(calibrated, raw.label_ids, per_label=True),
    }
    config.label_thresholds = None if threshold_tuning == UNTUNED else candidates[threshold_tuning]
    result["threshold_tuning"] = threshold_tuning
    result["thresholds"] = {
        name: {
            "thresholds": thresholds,
            "validation": multi_label_summary(
                evaluation_report(raw.label_ids, logits / temperature, label_names, thresholds)
            ),
        }
        for name, thresholds in candidates.items()
    }
    logger.info(
        "thresholds (%s): validation micro-F1 %.4f, macro-F1 %.4f",
        threshold_tuning,
        *(result["thresholds"][threshold_tuning]["validation"][m] for m in ("f1_micro", "f1_macro")),
    )
    return result


def calibration_summary(report: dict) -> dict:
    return {
        name: report[name]
        for name in (*summary_metrics_of(report), *CALIBRATION_METRICS, "calibration_bins")
        if name in report
    }


def summary_metrics_of(report: dict) -> tuple[str, ...]:
    return MULTI_LABEL_METRICS if "thresholds" in report else ("accuracy",)


def multi_label_summary(report: dict) -> dict:
    return {name: report[name] for name in MULTI_LABEL_METRICS}


def test_and_report(trainer, test, threshold_candidates: dict | None = None) -> tuple[dict, str]:
    """Predicts the test split with the trained (best) model, on every process (each predicts its share), and
    prints its metrics; returns the full report, with `uncalibrated`: the calibration scores of the model's raw
    scores, and scikit-learn's text report (on the main process). A multi-label model's report also holds, in
    `threshold_tuning`, the test scores of each way of tuning its thresholds (`threshold_candidates`)."""
    config = trainer.model.config
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    prediction = trainer.predict(test, metric_key_prefix="test")
    if not trainer.is_world_process_zero():
        return {}, ""
    trainer.save_metrics("test", prediction.metrics)
    labels, logits, thresholds = prediction.label_ids, prediction.predictions, config.label_thresholds
    report = evaluation_report(labels, logits, label_names, thresholds)
    raw_logits = logits * config.calibration_temperature
    report["uncalibrated"] = calibration_summary(evaluation_report(labels, raw_logits, label_names, thresholds))
    if threshold_candidates:
        report["threshold_tuning"] = {
            name: multi_label_summary(evaluation_report(labels, logits, label_names, candidate["thresholds"]))
            for name, candidate in threshold_candidates.items()
        }
    print(f"\nTest results ({len(test)} papers):\n{metrics_table(report)}\n")
    return report, report_text(labels, logits, label_names, thresholds)
