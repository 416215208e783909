"""What a trained model is measured on: its calibration (temperature, multi-label thresholds) fitted on the
validation split, and its report on the test split.
"""

import logging

import numpy as np

from .calibration import GLOBAL, PER_LABEL, TEMPERATURE, UNTUNED, fit_temperature, probabilities, tune_thresholds
from .errors import UserError
from .evaluation import CALIBRATION_METRICS, MULTI_LABEL_METRICS, evaluation_report, metrics_table, report_text

logger = logging.getLogger(__name__)


def calibrate(trainer, validation, method: str, threshold_tuning: str = UNTUNED) -> dict:
    """Fits the model's calibration on the validation split (every process takes part in the prediction and fits
    the same temperature) and stores it in the config; returns the temperature and the validation split's
    calibration scores before and after. A multi-label model then has its decision thresholds tuned on the calibrated
    probabilities (`threshold_tuning`, stored in the config), and the result also holds the thresholds each way of
    tuning gives (`thresholds`) with their validation scores."""
    config = trainer.model.config
    config.calibration_temperature = 1.0
    raw = trainer.predict(validation, metric_key_prefix="validation")
    if not np.isfinite(raw.predictions).all():
        raise UserError(
            "the trained model gives NaN or infinite scores on the validation split (training diverged): "
            f"train again with a lower --learning_rate than {trainer.args.learning_rate}"
        )
    if method == TEMPERATURE:
        config.calibration_temperature = fit_temperature(raw.predictions, raw.label_ids)
    temperature = config.calibration_temperature
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    scores = {
        stage: calibration_summary(evaluation_report(raw.label_ids, logits, label_names))
        for stage, logits in (("before", raw.predictions), ("after", raw.predictions / temperature))
    }
    logger.info(
        "calibration (%s): temperature %.4f; validation ECE %.4f -> %.4f, log-loss %.4f -> %.4f",
        method,
        temperature,
        scores["before"]["expected_calibration_error"],
        scores["after"]["expected_calibration_error"],
        scores["before"]["log_loss"],
        scores["after"]["log_loss"],
    )
    result = {"method": method, "temperature": temperature, "validation": scores}
    if not config.is_multi_label:
        return result
    calibrated = probabilities(raw.predictions / temperature, multi_label=True)
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
                evaluation_report(raw.label_ids, raw.predictions / temperature, label_names, thresholds)
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
