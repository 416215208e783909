"""Training and fine-tuning with the `transformers` `Trainer`, then the report, plots and card.

`train_model` builds a new vocabulary, word vectors and model from a table of papers; `finetune_model`
starts from a trained folder or Hub repo. Both end in `fit_and_report`, which trains with the recipe of
`HybridTrainingArguments`, restores the best epoch, evaluates on the test split and leaves a complete
model folder: weights, tokenizer, code, metrics, report, plots and model card.
"""

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, concatenate_datasets
from huggingface_hub import ModelCard
from torch import nn
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, set_seed
from transformers.trainer_pt_utils import get_parameter_names

from .calibration import GLOBAL, PER_LABEL, TEMPERATURE, UNTUNED, fit_temperature, probabilities, tune_thresholds
from .data import DataError, label_names_of, load_papers, tokenize_papers, training_texts
from .errors import UserError
from .evaluation import (
    BEST_MULTI_LABEL_METRIC,
    CALIBRATION_METRICS,
    MULTI_LABEL_METRICS,
    compute_metrics,
    evaluation_report,
    metrics_table,
    report_text,
)
from .hub import check_hub_access, push_model_folder
from .model import (
    MODEL_TYPE,
    ArxivClassificationPipeline,
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMTokenizer,
)
from .model.configuration_hybrid_cnn_lstm import MULTI_LABEL, SINGLE_LABEL
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
from .training_args import FINAL_FIT_ALL, FINAL_FIT_TRAIN_VALIDATION, NO_FINAL_FIT, NOTEBOOK_RECIPE
from .word_vectors import (
    RANDOM,
    WORD2VEC,
    initialise_embedding,
    read_word_vectors,
    token_counts,
    train_word2vec,
    training_word_ids,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "classification_report.txt"
STAGING_SUFFIX = ".partial"


def staging_dir(output_dir: str | Path) -> Path:
    """Where a run writes (checkpoints included) until it has finished: `<output_dir>.partial`, beside
    `output_dir`, which it replaces only then, so that a failed or interrupted run leaves the model there intact."""
    output_dir = Path(os.path.abspath(output_dir))
    return output_dir.with_name(output_dir.name + STAGING_SUFFIX)


class HybridTrainer(Trainer):
    """A `Trainer` that also logs the accuracy of the training batches it saw since its last log,
    so that the history has train accuracy beside validation accuracy (as the notebook plotted)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train_counts = torch.zeros(2, device=self.args.device)  # correct, seen

    def get_train_dataloader(self):
        # BatchNorm cannot train on a batch of one paper, which a last incomplete batch can be: the training
        # loader drops it whenever there is a full batch to train on (evaluation keeps every paper).
        keep_last = self.args.dataloader_drop_last
        full_batch = self.args.train_batch_size * self.args.world_size
        self.args.dataloader_drop_last = keep_last or len(self.train_dataset) >= full_batch
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = keep_last

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        # Accuracy is a single-label model's: a multi-label one's labels are multi-hot rows.
        if model.training and "labels" in inputs and inputs["labels"].ndim == 1:
            labels = inputs["labels"]
            correct = (outputs.logits.detach().argmax(dim=-1) == labels).sum()
            self._train_counts += torch.stack([correct, torch.tensor(labels.numel(), device=correct.device)]).to(
                self._train_counts
            )
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model=None):
        if args.recipe == NOTEBOOK_RECIPE:
            return adam_with_l2(args.learning_rate, args.weight_decay)
        return Trainer.get_optimizer_cls_and_kwargs(args, model)

    def create_optimizer(self, model=None):
        """The `Trainer`'s optimizer, with the wide branch's weights in groups of their own at
        `--wide_learning_rate` (the scheduler then scales every group alike)."""
        optimizer = super().create_optimizer(model)
        wide = getattr(self.model if model is None else model, "wide", None)
        if wide is None:
            return optimizer
        wide_parameters = set(wide.parameters())
        for group in list(optimizer.param_groups):
            own = [p for p in group["params"] if p in wide_parameters]
            if own:
                group["params"] = [p for p in group["params"] if p not in wide_parameters]
                optimizer.add_param_group({**group, "params": own, "lr": self.args.wide_learning_rate})
        return optimizer

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The notebook's Adam decays every parameter (as L2). hf-hybrid's AdamW spares the embedding, the biases
        and the norms: decay would pull the vector of a word that a batch lacks towards zero at every step, so a
        rare word's vector would fade long before the word is learned."""
        if self.args.recipe == NOTEBOOK_RECIPE:
            return [name for name, _ in model.named_parameters()]
        return get_parameter_names(model, [nn.Embedding, nn.BatchNorm1d, nn.LayerNorm], ["bias"])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            correct, seen = self.accelerator.reduce(self._train_counts, reduction="sum").tolist()
            if seen:
                logs["train_accuracy"] = round(correct / seen, 4)
            self._train_counts.zero_()
        super().log(logs, start_time)


class FreezeEmbeddingCallback(TrainerCallback):
    """Keeps the word embedding at the vectors it started from for the first `epochs` epochs: no gradient reaches
    it, so the optimizer leaves it as it is."""

    def __init__(self, epochs: float):
        self.epochs = epochs

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        model.get_input_embeddings().weight.requires_grad_(state.epoch >= self.epochs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.get_input_embeddings().weight.requires_grad_(True)


def resolve_class_weights(spec: list[str], label_names: list[str], train_labels) -> list[float] | None:
    """`["balanced"]`: inverse class frequency in the training split (n / (classes * count)), or, for multi-label
    `train_labels` (each paper's list of label ids), each label's positive weight: its negative papers over its
    positive ones; `["none"]`: no weights; else `label=weight` pairs, by label name, other labels 1.0."""
    if spec in (["none"], []):
        return None
    train_labels = list(train_labels)
    if spec == ["balanced"] and train_labels and isinstance(train_labels[0], list):
        positives = np.bincount([i for ids in train_labels for i in ids], minlength=len(label_names))
        weights = np.where(positives > 0, (len(train_labels) - positives) / np.maximum(positives, 1), 1.0)
        return [round(float(weight), 6) for weight in weights]
    if spec == ["balanced"]:
        counts = np.bincount(np.asarray(train_labels), minlength=len(label_names))
        present = counts > 0
        weights = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
        return [round(float(weight), 6) for weight in weights]
    weights = dict.fromkeys(label_names, 1.0)
    for item in spec:
        name, separator, value = item.rpartition("=")
        if not separator or name not in weights:
            raise DataError(f"--class_weights {item!r}: expected LABEL=WEIGHT with LABEL one of {label_names}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise DataError(f"--class_weights {item!r}: {value!r} is not a number") from None
        if weights[name] < 0:
            raise DataError(f"--class_weights {item!r}: weights must not be negative")
    return [weights[name] for name in label_names]


def dataset_description(data_args) -> tuple[str, str]:
    """(name, type) of the training data, for the model card's `model-index`: a Hub dataset's id is both; a file
    is named by its stem and has the type of its format (`csv`, `json`, `parquet`), which the Hub reads as no
    dataset of its own."""
    if data_args.dataset_name:
        return data_args.dataset_name, data_args.dataset_name
    path = Path(data_args.train_file)
    return path.stem, path.suffix.lstrip(".").lower() or "file"


def train_model(model_args, data_args, training_args) -> dict:
    """Learns a vocabulary and a new model from the papers; returns the test report (on the main process).

    Example:

    ```python
    >>> from hf_hybrid.training_args import DataArguments, HybridTrainingArguments, ModelArguments
    >>> from hf_hybrid.trainer import train_model
    >>> report = train_model(ModelArguments(), DataArguments(train_file="papers.csv"),
    ...                      HybridTrainingArguments(output_dir="out"))  # doctest: +SKIP
    ```
    """
    _check_output_and_hub(training_args)
    if training_args.resume_from_checkpoint:
        check_checkpoint_fits(training_args.resume_from_checkpoint, model_args)
    set_seed(training_args.seed)
    with training_args.main_process_first(desc="loading papers"):
        splits = load_papers(data_args, seed=training_args.seed, multi_label=model_args.problem_type == MULTI_LABEL)

    def new_model(train):
        return build_new_model(train, label_names_of(splits["train"]), model_args, training_args)

    model, tokenizer, embedding_start = new_model(splits["train"])
    return fit_and_report(
        model, tokenizer, splits, data_args, training_args, embedding_start=embedding_start, new_model=new_model
    )


def build_new_model(train, label_names: list[str], model_args, training_args):
    """A model, its tokenizer and its starting embedding, all learned from the papers of `train` alone:
    (model, tokenizer, where the embedding started)."""
    tokenizer = _shared_tokenizer(train, model_args, training_args)
    config = HybridCNNLSTMConfig(
        **model_args.config_values(),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(label_names)),
        class_weights=resolve_class_weights(model_args.class_weights, label_names, train["labels"]),
    )
    model = HybridCNNLSTMForSequenceClassification(config)
    logger.info("model: %s parameters", f"{model.num_parameters():,}")
    embedding_start = start_embedding(model, tokenizer, train, model_args.init_embeddings, training_args.seed)
    if model.wide is not None:
        count_document_frequencies(model.wide, tokenizer, train)
    return model, tokenizer, embedding_start


def check_checkpoint_fits(checkpoint: str, model_args) -> None:
    """Refuses, before any work, a checkpoint whose model the flags would not build: the vocabulary and word
    vectors would be learned for nothing, and its weights would not load (or, with sizes that happen to fit,
    the run would go on with other hyperparameters than it started with)."""
    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text())
    except (OSError, ValueError) as error:
        reason = (
            "no config.json" if isinstance(error, FileNotFoundError) else f"its config.json cannot be read: {error}"
        )
        raise DataError(
            f"--resume_from_checkpoint {checkpoint}: no checkpoint there ({reason}): give a "
            "checkpoint-* folder of the run's <output_dir>.partial"
        ) from None
    # A config saved before multi-label models existed has no problem type: it is single-label.
    saved["problem_type"] = saved.get("problem_type") or SINGLE_LABEL
    differing = [
        f"--{name} {_flag_value(value)} (the checkpoint's: {_flag_value(saved.get(name))})"
        for name, value in model_args.config_values().items()
        if _normalised(saved.get(name)) != _normalised(value)
    ]
    if isinstance(saved.get("vocab_size"), int) and saved["vocab_size"] > model_args.vocab_size:
        differing.append(
            f"--vocab_size {model_args.vocab_size} (the checkpoint's model has {saved['vocab_size']} words)"
        )
    if differing:
        raise DataError(
            f"--resume_from_checkpoint {checkpoint}: the flags build another model than the checkpoint's: "
            f"{'; '.join(differing)}; resume with the flags the run started with"
        )


def _normalised(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _flag_value(value) -> str:
    return (
        " ".join(map(str, value))
        if isinstance(value, (list, tuple))
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def start_embedding(model, tokenizer, train, init_embeddings: str, seed: int) -> dict | None:
    """Puts word vectors into the embedding rows of their words: `"word2vec"` learns them from the training
    split's texts, any other value but `"random"` is a word2vec/GloVe text file. Returns where they came from
    and their coverage of the vocabulary and of the training tokens (None for a random start)."""
    if init_embeddings == RANDOM:
        return None
    word_ids = training_word_ids(tokenizer, training_texts(train))
    if init_embeddings == WORD2VEC:
        logger.info("learning word2vec vectors from the %d training titles and abstracts", len(word_ids))
        vectors = train_word2vec(word_ids, model.config.embed_dim, seed)
    else:
        vectors = read_word_vectors(init_embeddings, tokenizer, model.config.embed_dim)
    coverage = initialise_embedding(
        model.get_input_embeddings(), vectors, token_counts(word_ids, len(tokenizer)), tokenizer.pad_token_id
    )
    logger.info(
        "word vectors (%s): %d of %d vocabulary words (%.1f%%), %.1f%% of the training tokens",
        coverage["source"],
        coverage["vocabulary_words_with_vector"],
        len(tokenizer) - 1,
        100 * coverage["vocabulary_coverage"],
        100 * coverage["training_token_coverage"],
    )
    return coverage


def finetune_model(finetune_args, data_args, training_args) -> dict:
    """Continues training a saved model (folder or Hub repo id) on new papers, keeping its vocabulary.

    Papers whose labels are all among the model's keep its head; any other label set gets a fresh head.
    """
    if training_args.final_fit != NO_FINAL_FIT:
        raise UserError("--final_fit trains a new model from scratch: use it with hf-hybrid train, not finetune")
    _check_output_and_hub(training_args)
    set_seed(training_args.seed)
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(finetune_args.model, revision=finetune_args.revision)
    config = HybridCNNLSTMConfig.from_pretrained(finetune_args.model, revision=finetune_args.revision)
    base_labels = [config.id2label[i] for i in range(config.num_labels)]
    with training_args.main_process_first(desc="loading papers"):
        splits = load_papers(data_args, seed=training_args.seed, multi_label=config.is_multi_label)
        label_names = label_names_of(splits["train"])
        keep_head = set(label_names) <= set(base_labels)
        if keep_head and label_names != base_labels:
            splits = load_papers(
                data_args, seed=training_args.seed, label_names=base_labels, multi_label=config.is_multi_label
            )
            label_names = base_labels
    if not keep_head:
        logger.warning(
            "new label set %s (model had %s): training a fresh classification head", label_names, base_labels
        )
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
        config.label_thresholds = None
    config.class_weights = resolve_class_weights(finetune_args.class_weights, label_names, splits["train"]["labels"])
    _log_unknown_words(tokenizer, splits["train"])
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(
        finetune_args.model, revision=finetune_args.revision, config=config, ignore_mismatched_sizes=not keep_head
    )
    return fit_and_report(model, tokenizer, splits, data_args, training_args, base_model=finetune_args.model)


@torch.no_grad()
def count_document_frequencies(wide, tokenizer, train, batch_size: int = 1000) -> None:
    """Sets the wide branch's inverse document frequencies from the training papers, with its own features."""
    frequency = torch.zeros_like(wide.idf, dtype=torch.long)
    for start in range(0, len(train), batch_size):
        rows = train[start : start + batch_size]
        batch = tokenizer(rows["title"], rows["abstract"], padding=True, return_tensors="pt")
        features = [
            wide.features(batch[f"{field}_input_ids"], batch[f"{field}_attention_mask"].bool())
            for field in ("title", "abstract")
        ]
        ids = torch.cat([ids for ids, _ in features], dim=1)
        real = torch.cat([mask for _, mask in features], dim=1)
        ids = torch.where(real, ids, -1).sort(dim=1).values
        first = torch.ones_like(real)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        frequency += torch.bincount(ids[first & (ids >= 0)], minlength=len(frequency))
    wide.set_document_frequencies(frequency, len(train))


def adam_with_l2(learning_rate: float, weight_decay: float):
    """The notebook recipe's optimizer, as the `Trainer`'s `optimizer_cls_and_kwargs`: Adam, which adds weight
    decay to the gradient (L2), unlike AdamW."""
    # fused: one kernel for all parameters, 4-9% of a CPU training step faster than foreach (measured)
    return torch.optim.Adam, {"lr": learning_rate, "weight_decay": weight_decay, "fused": True}


def fit_and_report(
    model,
    tokenizer,
    splits,
    data_args,
    training_args,
    base_model: str | None = None,
    embedding_start: dict | None = None,
    new_model=None,
) -> dict:
    """Trains `model` on the splits, restores its best epoch, calibrates it on the validation split, tests it and
    leaves the complete output folder (then pushes it with `--push_to_hub`); returns the test report.

    With `--final_fit`, `new_model(papers)` (a fresh model, tokenizer and embedding start learned from `papers`)
    is then trained on more of the labelled papers, with the same recipe and the held-out run's best epoch count
    and calibration, and is the model saved; the reports stay those of the held-out run.

    Everything is written to `staging_dir(output_dir)` first and moved into `output_dir` at the very end;
    if anything fails before, `output_dir` is left as it was and the log says where the checkpoints are.
    """
    staging = staging_dir(training_args.output_dir)
    try:
        with training_args.main_process_first(desc="tokenizing"):
            tokenized = tokenize_papers(splits, tokenizer)
        trainer = build_trainer(model, tokenizer, tokenized, training_args, staging)
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        calibration = calibrate(
            trainer, tokenized["validation"], training_args.calibration, training_args.threshold_tuning
        )
        report, text = test_and_report(trainer, tokenized["test"], calibration.get("thresholds"))
        final = None
        if training_args.final_fit != NO_FINAL_FIT:
            final = fit_final_model(new_model, splits, trainer, training_args, staging)
            model, tokenizer, embedding_start = final.pop("model"), final.pop("tokenizer"), final.pop("embedding_start")
        if not trainer.is_world_process_zero():
            return {}
        facts = {
            f"best_validation_{trainer.args.metric_for_best_model}": trainer.state.best_metric,
            "epochs_trained": trainer.state.epoch,
            "calibration": calibration,
            "final_fit": final,
            "data_cleaning": getattr(splits, "cleaning", None),
            "embedding_start": embedding_start,
            "base_model": base_model,
            **dict(zip(("dataset_name", "dataset_type"), dataset_description(data_args))),
        }
        save_model_folder(
            trainer, model, tokenizer, train_result, report, text, facts, splits["test"][0], training_args
        )
    except BaseException as error:
        last = _last_complete_checkpoint(staging)
        resume = f"; resume with --resume_from_checkpoint {last}" if last else ""
        logger.error(
            "the run did not finish (%s): %s is unchanged; its partial files are in %s%s",
            type(error).__name__,
            training_args.output_dir,
            staging,
            resume,
        )
        raise
    if training_args.push_to_hub:
        url = push_model_folder(
            training_args.output_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
        logger.info("pushed to %s", url)
    return report


def _last_complete_checkpoint(staging: Path) -> Path | None:
    """The latest checkpoint that was saved whole (the Trainer writes its state last): one to resume from."""
    complete = [path for path in staging.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return max(complete, key=lambda path: int(path.name.rpartition("-")[2]), default=None)


def _is_main_process(training_args) -> bool:
    return training_args.process_index == 0


def build_trainer(model, tokenizer, tokenized, training_args, staging: Path) -> HybridTrainer:
    """The `HybridTrainer` of a run: writing into `staging`, early stopping, the embedding frozen as asked."""
    best = training_args.metric_for_best_model
    if model.config.is_multi_label and best == "accuracy":
        # A multi-label model has no accuracy of one label per paper: its epochs are compared by micro-F1.
        best = BEST_MULTI_LABEL_METRIC
    return HybridTrainer(
        model=model,
        # Our own push at the end sends only safe files; the Trainer's would also send its pickles.
        args=dataclasses.replace(training_args, push_to_hub=False, output_dir=str(staging), metric_for_best_model=best),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience),
            FreezeEmbeddingCallback(training_args.freeze_embedding_epochs),
        ],
    )


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


def best_epoch(log_history: list[dict], best_metric: float | None, metric: str = "accuracy") -> float | None:
    """The epoch of the evaluation that scored the best validation `metric` (the one restored at the end)."""
    return next((entry["epoch"] for entry in log_history if entry.get(f"eval_{metric}") == best_metric), None)


def fit_final_model(new_model, splits, held_out_trainer, training_args, staging: Path) -> dict:
    """Trains a fresh model (vocabulary, word vectors and weights) on every labelled paper, or on the training and
    validation papers (`--final_fit train_validation`, then measured on the test split), for the held-out run's best
    epoch count, with its calibration; returns the model, its tokenizer and embedding start, and what it was
    trained on (with its test report when the test split stayed out)."""
    parts = ["train", "validation"] + (["test"] if training_args.final_fit == FINAL_FIT_ALL else [])
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
    model.config.calibration_temperature = held_out_trainer.model.config.calibration_temperature
    model.config.label_thresholds = held_out_trainer.model.config.label_thresholds
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_papers(DatasetDict(train=papers, test=splits["test"]), tokenizer)
    # No evaluation, no checkpoints: there is no held-out split left to pick an epoch with.
    arguments = dataclasses.replace(
        training_args,
        push_to_hub=False,
        output_dir=str(staging / "final-fit"),
        num_train_epochs=epochs,
        max_steps=-1,
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
    trainer.train()
    shutil.rmtree(staging / "final-fit", ignore_errors=True)
    final = {
        "mode": training_args.final_fit,
        "splits": parts,
        "train_papers": len(papers),
        "epochs": epochs,
        "model": model,
        "tokenizer": tokenizer,
        "embedding_start": embedding_start,
    }
    if training_args.final_fit == FINAL_FIT_TRAIN_VALIDATION:
        prediction = trainer.predict(tokenized["test"], metric_key_prefix="final_test")
        label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        final["test"] = evaluation_report(
            prediction.label_ids, prediction.predictions, label_names, model.config.label_thresholds
        )
        print(f"\nThe final model on the test split ({len(splits['test'])} papers):\n{metrics_table(final['test'])}\n")
    return final


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
    _replace_folder(Path(training_args.output_dir), output_dir)
    logger.info("saved the model, metrics, plots and card to %s", training_args.output_dir)
    card = Path(training_args.output_dir) / CARD_FILE
    headline = "f1_micro" if model.config.is_multi_label else "accuracy"
    print(
        f"Test {headline} {report[headline]:.4f}; the model card ({card}) says "
        f"{ModelCard.load(card).data.eval_results[0].metric_value}."
    )


def _replace_folder(output_dir: Path, finished: Path) -> None:
    """Puts the finished run's folder at `output_dir`, in place of the model there, if any."""
    previous = output_dir.with_name(output_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    if output_dir.exists():
        output_dir.rename(previous)
    finished.rename(output_dir)
    shutil.rmtree(previous, ignore_errors=True)


def _is_model_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def _check_output_and_hub(training_args):
    """Checks, before anything is read or written, that the run may replace `output_dir` and push; then
    clears the partial files of an earlier run that did not finish, unless this run resumes it."""
    if not training_args.output_dir:
        raise DataError("--output_dir is required")
    output_dir = Path(training_args.output_dir)
    reusable = output_dir.is_dir() and (not any(output_dir.iterdir()) or _is_model_folder(output_dir))
    if output_dir.exists() and not reusable:
        raise DataError(
            f"--output_dir {output_dir} holds files that are not an hf-hybrid model, which a finished run would "
            "replace: choose a new or empty folder"
        )
    if training_args.push_to_hub:
        if not training_args.hub_model_id:
            raise DataError("--push_to_hub needs --hub_model_id (e.g. your-name/arxiv-hybrid)")
        check_hub_access(training_args.hub_model_id, training_args.hub_token)
    staging = staging_dir(output_dir)
    if _is_main_process(training_args) and staging.exists() and not training_args.resume_from_checkpoint:
        logger.warning("removing %s, the partial files of an earlier run that did not finish", staging)
        shutil.rmtree(staging)


def _shared_tokenizer(train, model_args, training_args) -> HybridCNNLSTMTokenizer:
    """Learns the vocabulary from the training split on the main process; other processes load it."""
    staging = staging_dir(training_args.output_dir)
    with training_args.main_process_first(desc="learning the vocabulary"):
        if training_args.process_index == 0:
            tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(
                training_texts(train),
                vocab_size=model_args.vocab_size,
                min_frequency=model_args.min_frequency,
                max_title_length=model_args.max_title_length,
                max_abstract_length=model_args.max_abstract_length,
            )
            if training_args.world_size > 1:  # the other processes load it from there
                staging.mkdir(parents=True, exist_ok=True)
                tokenizer.save_pretrained(staging)
            logger.info("vocabulary: %d words learned from %d training papers", len(tokenizer), len(train))
        else:
            tokenizer = HybridCNNLSTMTokenizer.from_pretrained(staging)
    return tokenizer


def _log_unknown_words(tokenizer, train, sample: int = 2000):
    """Fine-tuning keeps the vocabulary: say how much of the new text it does not know."""
    rows = train[: min(sample, len(train))]  # a dict of lists: a column of a Dataset is a lazy `Column`
    encoded = tokenizer(rows["title"], rows["abstract"])
    ids = [i for field in ("title_input_ids", "abstract_input_ids") for row in encoded[field] for i in row]
    if ids:
        unknown = sum(i == tokenizer.unk_token_id for i in ids) / len(ids)
        logger.warning("the base model's vocabulary maps %.1f%% of the new words to <UNK>", 100 * unknown)
