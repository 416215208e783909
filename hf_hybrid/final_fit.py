"""`--final_fit`: after the held-out run has chosen the epoch count, the wide branch's C and the calibration, a
fresh model trained with them on more of the labelled papers (the training and validation splits, or all three), the
model a run then saves."""

import dataclasses
import logging
import shutil
from pathlib import Path

from datasets import DatasetDict, concatenate_datasets
from transformers import DataCollatorWithPadding, set_seed

from .data import tokenize_papers
from .evaluation import evaluation_report, metrics_table
from .trainer import FreezeEmbeddingCallback, HybridTrainer
from .training_args import FINAL_FIT_ALL, FINAL_FIT_TRAIN_VALIDATION
from .wide_fit import prepare_wide_branch, with_held_out_wide_logits

logger = logging.getLogger(__name__)


def best_epoch(log_history: list[dict], best_metric: float | None, metric: str = "accuracy") -> float | None:
    """The epoch of the evaluation that scored the best validation `metric` (the one restored at the end)."""
    return next((entry["epoch"] for entry in log_history if entry.get(f"eval_{metric}") == best_metric), None)


def fit_final_model(
    new_model,
    splits,
    held_out_trainer,
    training_args,
    mode: str,
    staging: Path,
    fresh_head: bool = True,
    wide_fit: dict | None = None,
) -> dict:
    """Trains a fresh model (`new_model(papers)`: a new vocabulary, word vectors and weights, or the base model
    again) on every labelled paper (`mode` `all`), or on the training and validation papers (`train_validation`,
    then measured on the test split), for the held-out run's best epoch count, with the wide branch's C it chose and
    its calibration; returns the model, its tokenizer and embedding start, and what it was trained on (with its
    test report when the test split stayed out)."""
    parts = ["train", "validation"] + (["test"] if mode == FINAL_FIT_ALL else [])
    papers = concatenate_datasets([splits[name] for name in parts])
    epochs = best_epoch(
        held_out_trainer.state.log_history,
        held_out_trainer.state.best_metric,
        held_out_trainer.args.metric_for_best_model,
    )
    epochs = round(epochs or held_out_trainer.state.epoch)
    logger.info("final fit: a new model on the %d papers of %s, for %d epochs", len(papers), " + ".join(parts), epochs)
    set_seed(training_args.seed)
    model, tokenizer, embedding_start = new_model(papers)
    # The held-out run's choice of C (`wide_fit`, its summary) holds for the final fit too; where validation gave
    # the deep part no weight, only the wide branch is fitted again (the deep part would count for nothing).
    regularization = (wide_fit or {}).get("inverse_regularization", training_args.wide_regularization)
    deep_counts = model.wide is None or held_out_trainer.model.config.deep_weight > 0
    arguments = dataclasses.replace(
        training_args,
        wide_regularization=regularization,
        wide_folds=training_args.wide_folds if deep_counts else 0,
    )
    _, held_out_wide_logits = prepare_wide_branch(model, tokenizer, papers, arguments, fresh_head=fresh_head)
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_papers(DatasetDict(train=papers, test=splits["test"]), tokenizer)
    tokenized["train"] = with_held_out_wide_logits(tokenized["train"], held_out_wide_logits)
    # No evaluation, no checkpoints: there is no held-out split left to pick an epoch with, nor to halve a plateau
    # scheduler's learning rate on (the notebook recipe's keeps its rate).
    plateau = training_args.lr_scheduler_type == "reduce_lr_on_plateau"
    arguments = dataclasses.replace(
        training_args,
        push_to_hub=False,
        output_dir=str(staging / "final-fit"),
        num_train_epochs=epochs,
        max_steps=-1,
        lr_scheduler_type="constant" if plateau else training_args.lr_scheduler_type,
        lr_scheduler_kwargs={} if plateau else training_args.lr_scheduler_kwargs,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        resume_from_checkpoint=None,
    )
    trainer = HybridTrainer(
        model=model,
        args=arguments,
        train_dataset=tokenized["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[FreezeEmbeddingCallback(training_args.freeze_embedding_epochs)],
    )
    if deep_counts:
        trainer.train()
    else:
        logger.info("final fit: the deep part has no weight (deep_weight 0): it is not trained again")
    held_out_config = held_out_trainer.model.config
    for name in ("calibration_temperature", "deep_weight", "label_thresholds"):
        setattr(model.config, name, getattr(held_out_config, name))
    if trainer.is_world_process_zero():
        shutil.rmtree(staging / "final-fit", ignore_errors=True)
    final = {
        "mode": mode,
        "splits": parts,
        "train_papers": len(papers),
        "epochs": epochs if deep_counts else 0,
        "model": model,
        "tokenizer": tokenizer,
        "embedding_start": embedding_start,
    }
    if mode == FINAL_FIT_TRAIN_VALIDATION:
        prediction = trainer.predict(tokenized["test"], metric_key_prefix="final_test")
        label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        final["test"] = evaluation_report(
            prediction.label_ids, prediction.predictions, label_names, model.config.label_thresholds
        )
        if trainer.is_world_process_zero():
            print(
                f"\nThe final model on the test split ({len(splits['test'])} papers):\n{metrics_table(final['test'])}\n"
            )
    return final
