"""Training and fine-tuning, end to end: `train_model` builds a new vocabulary, word vectors and model from a
table of papers; `finetune_model` starts from a trained folder or Hub repo. Both end in `fit_and_report`, which
trains with the recipe of `HybridTrainingArguments`, restores the best epoch, calibrates on the validation split,
tests, optionally trains the final model again on more papers (`--final_fit`) and leaves a complete model folder:
weights, tokenizer, code, metrics, report, plots and model card.
"""

import copy
import json
import logging
from pathlib import Path

import torch
from transformers import set_seed

from .calibration import GLOBAL, clear_calibration
from .class_weights import default_rule, resolve_class_weights
from .data import load_papers, papers_digest, tokenize_papers, training_texts
from .distributed import share_from_main_process
from .errors import UserError
from .final_fit import fit_final_model
from .held_out import calibrate, test_and_report
from .hub import model_loading, push_model_folder
from .model import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
from .model.configuration_hybrid_cnn_lstm import MIN_VOCAB_SIZE, MULTI_LABEL, SINGLE_LABEL
from .output_folder import check_output_and_hub, last_complete_checkpoint, save_model_folder, staging_dir
from .tables import label_names_of
from .trainer import PAPERS_RECORD, build_trainer
from .training_args import (
    NO_FINAL_FIT,
    DataArguments,
    FinetuneArguments,
    HybridTrainingArguments,
    ModelArguments,
)
from .wide_fit import prepare_wide_branch, with_held_out_wide_logits
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


def train_model(model_args: ModelArguments, data_args: DataArguments, training_args: HybridTrainingArguments) -> dict:
    """Learns a vocabulary and a new model from the papers, with the recipe of `training_args` (`hf-hybrid train`;
    for a multi-label model, the recipe's multi-label values, set in `training_args`); leaves the model folder at
    `training_args.output_dir` and returns the test report (on the main process).

    Example:

    ```python
    >>> from hf_hybrid import DataArguments, HybridTrainingArguments, ModelArguments, train_model
    >>> report = train_model(ModelArguments(), DataArguments(train_file="papers.csv"),
    ...                      HybridTrainingArguments(output_dir="out", recipe="notebook"))  # doctest: +SKIP
    >>> report["accuracy"]  # doctest: +SKIP
    ```
    """
    model_args = model_args.for_recipe(training_args.recipe)
    check_threshold_tuning(model_args.problem_type == MULTI_LABEL, training_args, "this run is single-label")
    if model_args.problem_type == MULTI_LABEL:
        training_args.use_multi_label_values()
    check_output_and_hub(training_args)
    if training_args.resume_from_checkpoint:
        check_checkpoint_fits(training_args.resume_from_checkpoint, model_args)
    set_seed(training_args.seed)
    with training_args.main_process_first(desc="loading papers"):
        splits = load_papers(data_args, seed=training_args.seed, multi_label=model_args.problem_type == MULTI_LABEL)
    check_resumed_papers(training_args, splits)

    def new_model(train):
        return build_new_model(train, label_names_of(splits["train"]), model_args, training_args)

    model, tokenizer, embedding_start = new_model(splits["train"])
    return fit_and_report(
        model, tokenizer, splits, data_args, training_args, embedding_start=embedding_start, new_model=new_model
    )


def check_resumed_papers(training_args, splits) -> None:
    """Refuses to resume a checkpoint on other papers than its run started with (another file or order, split or
    sample): the weights would go on learning other training papers, and could be tested on papers they learned."""
    checkpoint = training_args.resume_from_checkpoint
    if not checkpoint:
        return
    record = Path(checkpoint) / PAPERS_RECORD
    recorded = record.read_text().strip() if record.is_file() else None
    digest = papers_digest(splits)
    if recorded != digest:
        raise UserError(
            f"--resume_from_checkpoint {checkpoint}: the run started on other papers (their digest {recorded}, "
            f"these papers' {digest}): resume with the same data files, --split_seed and --max_train_samples, or "
            "start again"
        )


def check_threshold_tuning(multi_label: bool, training_args, why: str) -> None:
    """Refuses `--threshold_tuning` for a single-label model (`why` says which), where it would change nothing."""
    if training_args.threshold_tuning is not None and not multi_label:
        raise UserError(f"--threshold_tuning applies only to --problem_type {MULTI_LABEL} and {why}: drop the flag")


def build_new_model(train, label_names: list[str], model_args, training_args):
    """A model, its tokenizer and its starting embedding, all learned from the papers of `train` alone:
    (model, tokenizer, where the embedding started). On several processes the main one learns them and gives them
    to the others (where the embedding started: None there)."""
    tokenizer = _shared_tokenizer(train, model_args, training_args)
    if len(tokenizer) < MIN_VOCAB_SIZE:
        raise UserError(
            f"no word of the {len(train)} training papers is seen --min_frequency {model_args.min_frequency} times: "
            "lower it, or train on more papers"
        )
    config = HybridCNNLSTMConfig(
        **model_args.config_values(),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(label_names)),
        class_weights=resolve_class_weights(model_args.class_weights, label_names, train["labels"]),
    )
    model = HybridCNNLSTMForSequenceClassification(config)
    logger.info("model: %s parameters", f"{model.num_parameters():,}")
    embedding_start = None
    if training_args.process_index == 0:
        embedding_start = start_embedding(model, tokenizer, train, model_args.init_embeddings, training_args.seed)
        if model.wide is not None:
            model.wide.count_document_frequencies(tokenizer, train)
    share_from_main_process(training_args, model.state_dict().values())
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
        raise UserError(
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
        raise UserError(
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


def finetune_model(
    finetune_args: FinetuneArguments, data_args: DataArguments, training_args: HybridTrainingArguments
) -> dict:
    """Continues training a saved model (folder or Hub repo id) on new papers, keeping its vocabulary
    (`hf-hybrid finetune`); returns the test report (on the main process).

    Papers whose labels are all among the model's keep its head; any other label set gets a fresh head.

    Example:

    ```python
    >>> from hf_hybrid import DataArguments, FinetuneArguments, HybridTrainingArguments, finetune_model
    >>> report = finetune_model(FinetuneArguments(model="out"), DataArguments(train_file="new_papers.csv"),
    ...                         HybridTrainingArguments(output_dir="out-finetuned"))  # doctest: +SKIP
    ```
    """
    check_output_and_hub(training_args)
    set_seed(training_args.seed)
    with model_loading(finetune_args.model, finetune_args.revision):
        tokenizer = HybridCNNLSTMTokenizer.from_pretrained(finetune_args.model, revision=finetune_args.revision)
        config = HybridCNNLSTMConfig.from_pretrained(finetune_args.model, revision=finetune_args.revision)
    clear_calibration(config)  # fitted again on the new validation split, for the fine-tuned weights
    check_threshold_tuning(config.is_multi_label, training_args, f"{finetune_args.model} is a single-label model")
    if config.is_multi_label:
        training_args.use_multi_label_values()
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
    check_resumed_papers(training_args, splits)
    if not keep_head:
        logger.warning(
            "new label set %s (model had %s): training a fresh classification head", label_names, base_labels
        )
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    rule = finetune_args.class_weights
    rule = default_rule(config.is_multi_label) if rule is None else rule
    config.class_weights = resolve_class_weights(rule, label_names, splits["train"]["labels"])
    _log_unknown_words(tokenizer, splits["train"])
    base_model = base_model_loader(finetune_args, config, tokenizer, fresh_head=not keep_head)
    model, _, _ = base_model(splits["train"])
    return fit_and_report(
        model,
        tokenizer,
        splits,
        data_args,
        training_args,
        base_model=finetune_args.model,
        new_model=base_model,
        fresh_head=not keep_head,
    )


def base_model_loader(finetune_args, config, tokenizer, fresh_head: bool):
    """`load(papers)`: the base model of `finetune_args` with `config` (its labels), as `new_model` callbacks return
    it: (model, tokenizer, None). Everything that fits the new labels keeps the base model's weights (vocabulary,
    word vectors, both encoders, the head's hidden layers, the wide branch's idf); with a `fresh_head`, the head's
    output layer and the wide branch's weights start anew. Each call loads a fresh copy, with a config of its own."""

    def load(papers):
        model = HybridCNNLSTMForSequenceClassification.from_pretrained(
            finetune_args.model,
            revision=finetune_args.revision,
            config=copy.deepcopy(config),
            ignore_mismatched_sizes=fresh_head,
        )
        if fresh_head:
            # New labels, even as many as the base model's: nothing of the old labels' own weights may stay.
            output = model.classifier[-1]
            with torch.no_grad():
                torch.nn.init.xavier_uniform_(output.weight)  # the model's own init of a linear layer
                output.bias.zero_()
                if model.wide is not None:
                    model.wide.weight.zero_()
                    model.wide.bias.zero_()
        return model, tokenizer, None

    return load


def fit_and_report(
    model,
    tokenizer,
    splits,
    data_args,
    training_args,
    base_model: str | None = None,
    embedding_start: dict | None = None,
    new_model=None,
    fresh_head: bool = True,
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
    # Both are fitted again after training, on the model as it then is; it trains with the deep part's whole weight.
    model.config.calibration_temperature, model.config.deep_weight = 1.0, 1.0
    try:
        with training_args.main_process_first(desc="tokenizing"):
            tokenized = tokenize_papers(splits, tokenizer)
        wide_fit, held_out_wide_logits = prepare_wide_branch(
            model,
            tokenizer,
            splits["train"],
            training_args,
            fresh_head=fresh_head,
            resuming=bool(training_args.resume_from_checkpoint),
        )
        tokenized["train"] = with_held_out_wide_logits(tokenized["train"], held_out_wide_logits)
        training_args.fit_epochs_to(len(tokenized["train"]))
        trainer = build_trainer(model, tokenizer, tokenized, training_args, staging, papers_digest(splits))
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        calibration = calibrate(
            trainer, tokenized["validation"], training_args.calibration, training_args.threshold_tuning or GLOBAL
        )
        report, text = test_and_report(trainer, tokenized["test"], calibration.get("thresholds"))
        final = None
        final_fit = training_args.final_fit_for(sum(len(split) for split in splits.values()))
        if final_fit != NO_FINAL_FIT:
            final = fit_final_model(new_model, splits, trainer, training_args, final_fit, staging, fresh_head, wide_fit)
            model, tokenizer, embedding_start = final.pop("model"), final.pop("tokenizer"), final.pop("embedding_start")
        if not trainer.is_world_process_zero():
            trainer.accelerator.wait_for_everyone()  # returns once the main process has put the folder in place
            return {}
        facts = {
            f"best_validation_{trainer.args.metric_for_best_model}": trainer.state.best_metric,
            "epochs_trained": trainer.state.epoch,
            "calibration": calibration,
            "wide_fit": wide_fit,
            "final_fit": final,
            "papers": {name: len(split) for name, split in splits.items()},
            "data_cleaning": getattr(splits, "cleaning", None),
            "embedding_start": embedding_start,
            "base_model": base_model,
            **dict(zip(("dataset_name", "dataset_type"), dataset_description(data_args))),
        }
        save_model_folder(
            trainer, model, tokenizer, train_result, report, text, facts, splits["test"][0], training_args
        )
        trainer.accelerator.wait_for_everyone()
    except BaseException as error:
        last = last_complete_checkpoint(staging)
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


def dataset_description(data_args) -> tuple[str, str]:
    """(name, type) of the training data, for the model card's `model-index`: a Hub dataset's id is both; a file
    is named by its stem and has the type of its format (`csv`, `json`, `parquet`), which the Hub reads as no
    dataset of its own."""
    if data_args.dataset_name:
        return data_args.dataset_name, data_args.dataset_name
    path = Path(data_args.train_file)
    return path.stem, path.suffix.lstrip(".").lower() or "file"


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
