"""A run's output folder: where it writes until it has finished, what the finished folder holds, and the swap
that puts it in place of `--output_dir` all at once (a failed or interrupted run leaves the model there intact).
"""

import json
import logging
import os
import shutil
from pathlib import Path

from huggingface_hub import ModelCard

from .errors import UserError
from .hub import check_hub_access
from .model import MODEL_TYPE, ArxivClassificationPipeline
from .model_card import CARD_FILE, EVAL_RESULTS_FILE, TRAINING_ARGS_FILE, ModelCardFacts, build_model_card
from .plots import (
    ATTENTION_PLOT,
    CALIBRATION_PLOT,
    CONFUSION_PLOT,
    HISTORY_PLOT,
    LABEL_F1_PLOT,
    plot_attention,
    plot_calibration,
    plot_confusion_matrix,
    plot_history,
    plot_label_f1,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "classification_report.txt"
STAGING_SUFFIX = ".partial"


def staging_dir(output_dir: str | Path) -> Path:
    """Where a run writes (checkpoints included) until it has finished: `<output_dir>.partial`, beside
    `output_dir`, which it replaces only then, so that a failed or interrupted run leaves the model there intact."""
    output_dir = Path(os.path.abspath(output_dir))
    return output_dir.with_name(output_dir.name + STAGING_SUFFIX)


def check_output_and_hub(training_args) -> None:
    """Checks, before anything is read or written, that the run may replace `output_dir` and push; then
    clears the partial files of an earlier run that did not finish, unless this run resumes it."""
    if not training_args.output_dir:
        raise UserError("--output_dir is required")
    output_dir = Path(training_args.output_dir)
    reusable = output_dir.is_dir() and (not any(output_dir.iterdir()) or is_model_folder(output_dir))
    if output_dir.exists() and not reusable:
        raise UserError(
            f"--output_dir {output_dir} holds files that are not an hf-hybrid model, which a finished run would "
            "replace: choose a new or empty folder"
        )
    if training_args.push_to_hub:
        if not training_args.hub_model_id:
            raise UserError("--push_to_hub needs --hub_model_id (e.g. your-name/arxiv-hybrid)")
        check_hub_access(training_args.hub_model_id, training_args.hub_token)
    staging = staging_dir(output_dir)
    if training_args.process_index == 0 and staging.exists() and not training_args.resume_from_checkpoint:
        logger.warning("removing %s, the partial files of an earlier run that did not finish", staging)
        shutil.rmtree(staging)


def last_complete_checkpoint(staging: Path) -> Path | None:
    """The latest checkpoint that was saved whole (the Trainer writes its state last): one to resume from."""
    complete = [path for path in staging.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return max(complete, key=lambda path: int(path.name.rpartition("-")[2]), default=None)


def save_model_folder(
    trainer, model, tokenizer, train_result, report: dict, text: str, facts: dict, example: dict, training_args
) -> None:
    """Writes `model` and `tokenizer`, the metrics, reports, plots and card of `trainer`'s run into its output folder
    (the staging folder), drops the checkpoints and puts the folder in place of `training_args.output_dir`.

    `text` is the text report; `facts` what the card says beyond the config and the report (see
    `ModelCardFacts`); `example` the test paper whose attention is plotted."""
    output_dir = Path(trainer.args.output_dir)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    ArxivClassificationPipeline(model=model, tokenizer=tokenizer).save_pretrained(output_dir)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    results = {"test": report, **facts, "log_history": trainer.state.log_history}
    (output_dir / EVAL_RESULTS_FILE).write_text(json.dumps(results, indent=2))
    (output_dir / REPORT_FILE).write_text(text)
    (output_dir / TRAINING_ARGS_FILE).write_text(training_args.to_json_string())
    plot_history(trainer.state.log_history, output_dir / HISTORY_PLOT)
    if model.config.is_multi_label:
        plot_label_f1(report["per_class"], output_dir / LABEL_F1_PLOT)
    else:
        plot_confusion_matrix(report["confusion_matrix"], label_names, output_dir / CONFUSION_PLOT)
    plot_attention(model, tokenizer, example["title"], example["abstract"], output_dir / ATTENTION_PLOT)
    plot_calibration(
        {"uncalibrated": report["uncalibrated"]["calibration_bins"], "calibrated": report["calibration_bins"]},
        output_dir / CALIBRATION_PLOT,
    )
    build_model_card(ModelCardFacts.from_folder(output_dir)).save(output_dir / CARD_FILE)
    # Checkpoints hold pickled optimizer and RNG states; the best one is now the saved model.
    for checkpoint in output_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    replace_folder(Path(training_args.output_dir), output_dir)
    logger.info("saved the model, metrics, plots and card to %s", training_args.output_dir)
    card = Path(training_args.output_dir) / CARD_FILE
    headline = "f1_micro" if model.config.is_multi_label else "accuracy"
    print(
        f"Test {headline} {report[headline]:.4f}; the model card ({card}) says "
        f"{ModelCard.load(card).data.eval_results[0].metric_value}."
    )


def replace_folder(output_dir: Path, finished: Path) -> None:
    """Puts the finished run's folder at `output_dir`, in place of the model there, if any."""
    previous = output_dir.with_name(output_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    if output_dir.exists():
        output_dir.rename(previous)
    finished.rename(output_dir)
    shutil.rmtree(previous, ignore_errors=True)


def is_model_folder(folder: Path) -> bool:
    """Whether `folder` holds an hf-hybrid model (which a finished run may replace)."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False
