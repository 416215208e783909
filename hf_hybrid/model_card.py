"""The model card (`README.md`) of a trained model folder, with `model-index` metrics the Hub can read.

Every fact of a card is in one `ModelCardFacts`, read back from the files a training run saves (the config,
`eval_results.json`, `training_args.json`), so a card written at the end of training and one written for a push
to another repo say the same things. The template is `model_card_template.md`, beside this module.
"""

import dataclasses
import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluation import metrics_table
from .model import HybridCNNLSTMConfig
from .plot_files import PLOT_FILES
from .training_args import MODEL_HYPERPARAMETERS, NOT_FLAGS

TEMPLATE = Path(__file__).with_name("model_card_template.md")
CARD_FILE = "README.md"
EVAL_RESULTS_FILE = "eval_results.json"
TRAINING_ARGS_FILE = "training_args.json"
# The model's hyperparameters in the card's table: those of the flags (the card shows the others otherwise).
CARD_HYPERPARAMETERS = tuple(name for name in MODEL_HYPERPARAMETERS if name not in NOT_FLAGS)
TRAINING_HYPERPARAMETERS = (
    "recipe",
    "num_train_epochs",
    "min_train_steps",
    "max_train_epochs",
    "per_device_train_batch_size",
    "optim",
    "learning_rate",
    "wide_learning_rate",
    "weight_decay",
    "max_grad_norm",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "early_stopping_patience",
    "freeze_embedding_epochs",
    "calibration",
    "threshold_tuning",
    "final_fit",
    "seed",
)


@dataclasses.dataclass
class ModelCardFacts:
    """What a card says about a trained model: its config, what it was trained on and how, and what it scored.

    `eval_results` is the content of the folder's `eval_results.json` (the test report, the best validation
    accuracy, where the embedding started, the data and the base model), `training_settings` that of
    `training_args.json`.
    """

    config: HybridCNNLSTMConfig
    eval_results: dict
    training_settings: dict
    plots: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelCardFacts":
        folder = Path(folder)
        return cls(
            config=HybridCNNLSTMConfig.from_pretrained(folder),
            eval_results=json.loads((folder / EVAL_RESULTS_FILE).read_text()),
            training_settings=json.loads((folder / TRAINING_ARGS_FILE).read_text()),
            plots=[name for name in PLOT_FILES if (folder / name).exists()],
        )

    @property
    def repo_id(self) -> str | None:
        """The repo the model was trained for (`--hub_model_id`), if any."""
        return self.training_settings.get("hub_model_id")


def eval_results(report: dict, dataset_name: str, dataset_type: str, split: str = "test") -> list[EvalResult]:
    """Accuracy and F1 for `model-index`: the Hub knows the `accuracy` and `f1` metric types, and
    `metric_config` tells macro from weighted F1 (micro, macro and samples F1 and subset accuracy, for a multi-label
    model)."""
    common = {
        "task_type": "text-classification",
        "task_name": "Text Classification",
        "dataset_name": dataset_name,
        "dataset_type": dataset_type,
        "dataset_split": split,
    }
    if "f1_micro" in report:
        results = [
            EvalResult(
                metric_type="f1",
                metric_name=f"F1 ({average})",
                metric_config=average,
                metric_value=round(report[f"f1_{average}"], 4),
                **common,
            )
            for average in ("micro", "macro", "samples")
        ] + [
            EvalResult(
                metric_type="accuracy",
                metric_name="Subset accuracy",
                metric_config="subset",
                metric_value=round(report["subset_accuracy"], 4),
                **common,
            )
        ]
        return results + calibration_results(report, common)
    results = [
        EvalResult(metric_type="accuracy", metric_name="Accuracy", metric_value=round(report["accuracy"], 4), **common),
        EvalResult(
            metric_type="f1",
            metric_name="F1 (macro)",
            metric_config="macro",
            metric_value=round(report["f1_macro"], 4),
            **common,
        ),
        EvalResult(
            metric_type="f1",
            metric_name="F1 (weighted)",
            metric_config="weighted",
            metric_value=round(report["f1_weighted"], 4),
            **common,
        ),
    ]
    return results + calibration_results(report, common)


def calibration_results(report: dict, common: dict) -> list[EvalResult]:
    if "expected_calibration_error" not in report:  # a model trained before calibration was measured
        return []
    return [
        EvalResult(
            metric_type="expected_calibration_error",
            metric_name="Expected calibration error (15 bins)",
            metric_value=round(report["expected_calibration_error"], 4),
            **common,
        ),
        EvalResult(metric_type="log_loss", metric_name="Log-loss", metric_value=round(report["log_loss"], 4), **common),
    ]


def calibration_table(results: dict) -> str:
    """The calibration scores before and after calibration, on the validation split (where it was fitted) and the
    test split."""
    test = results["test"]
    if "calibration" not in results or "uncalibrated" not in test:
        return "Not measured: the model was trained by an hf-hybrid without calibration."
    stages = [
        ("validation", "before", results["calibration"]["validation"]["before"]),
        ("validation", "after", results["calibration"]["validation"]["after"]),
        ("test", "before", test["uncalibrated"]),
        ("test", "after", test),
    ]
    if "f1_micro" in test:
        lines = [
            "| split | calibration | ECE (15 bins, every label's probability) | log-loss (binary) | Brier |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {split} | {stage} | {scores['expected_calibration_error']:.4f} | {scores['log_loss']:.4f} | "
            f"{scores['brier_score']:.4f} |"
            for split, stage, scores in stages
        ]
        return "\n".join(lines)
    lines = [
        "| split | calibration | ECE (15 bins) | log-loss | Brier | mean top probability | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {split} | {stage} | {scores['expected_calibration_error']:.4f} | {scores['log_loss']:.4f} | "
        f"{scores['brier_score']:.4f} | {scores['mean_confidence']:.4f} | {scores['accuracy']:.4f} |"
        for split, stage, scores in stages
    ]
    return "\n".join(lines)


def threshold_table(results: dict) -> str:
    """A multi-label model's F1 with each way of setting its decision thresholds on the validation split, there and
    on the test split; the model keeps the one named in `threshold_tuning`."""
    candidates, test = results.get("calibration", {}).get("thresholds"), results["test"].get("threshold_tuning")
    if not candidates or not test:
        return "Not measured."
    chosen = results["calibration"]["threshold_tuning"]
    lines = [
        "| thresholds | validation micro-F1 | validation macro-F1 | test micro-F1 | test macro-F1 | test samples-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, candidate in candidates.items():
        validation, scores = candidate["validation"], test[name]
        label = f"**{name}** (this model's)" if name == chosen else name
        lines.append(
            f"| {label} | {validation['f1_micro']:.4f} | {validation['f1_macro']:.4f} | "
            f"{scores['f1_micro']:.4f} | {scores['f1_macro']:.4f} | {scores['f1_samples']:.4f} |"
        )
    return "\n".join(lines)


def coverage_rows(report: dict) -> str:
    """The coverage table's rows: per threshold, the share of test papers labelled and their accuracy."""
    if "coverage" not in report:
        return "| n/a | not measured | |"
    return "\n".join(
        f"| {row['threshold']:.2f} | {row['labelled_share']:.1%} | "
        f"{'n/a' if row['accuracy'] is None else format(row['accuracy'], '.4f')} |"
        for row in report["coverage"]
    )


def describe_training_papers(results: dict) -> str:
    """Which papers the saved weights were trained on, and which ones chose the epoch, fitted the calibration and
    gave the metrics."""
    papers, final_fit = results.get("papers"), results.get("final_fit")
    if not papers:
        return describe_final_fit(final_fit, results.get("base_model"))
    held_out = (
        f"The {papers['validation']:,} validation papers chose the best epoch and fitted the calibration, and the "
        f"{papers['test']:,} test papers gave the numbers above; "
    )
    if not final_fit:
        return held_out + f"the saved weights were trained on the {papers['train']:,} training papers alone."
    return held_out + describe_final_fit(final_fit, results.get("base_model"))


def describe_final_fit(final_fit: dict | None, base_model: str | None = None) -> str:
    """What the saved weights were trained on, when it is not the held-out run's training split."""
    if not final_fit:
        return ""
    start = f"from {base_model} again" if base_model else "from scratch"
    how = (
        f"with the same recipe, for its best epoch count ({final_fit['epochs']})"
        if final_fit["epochs"]
        else "its wide branch alone (validation gave the deep part no weight)"
    )
    sentence = (
        f"**the saved weights are not those of the run measured above.** That run kept the validation and test "
        f"splits out to measure the model and fit its calibration; the saved model was then trained again {start}, "
        f"{how}, on {final_fit['train_papers']:,} papers ({' + '.join(final_fit['splits'])} splits), and calibrated "
        "as it was. The numbers above are the held-out run's."
    )
    if final_fit.get("test"):
        test = final_fit["test"]
        headline = "micro-F1" if "f1_micro" in test else "accuracy"
        sentence += (
            f" The test split stayed out of this final fit too: on it, the saved model scores {headline} "
            f"{test.get('f1_micro', test.get('accuracy')):.4f}, ECE {test['expected_calibration_error']:.4f}."
        )
    return sentence


def build_model_card(facts: ModelCardFacts, repo_id: str | None = None) -> ModelCard:
    """The whole card, rendered from `facts` and the template, with `repo_id` (default: the repo the model was
    trained for) in its title and usage examples; without one, the output folder the model was trained into."""
    config, results, settings = facts.config, facts.eval_results, facts.training_settings
    repo_id = repo_id or facts.repo_id
    report, base_model = results["test"], results.get("base_model")
    dataset_name, dataset_type = results["dataset_name"], results["dataset_type"]
    folder = settings["output_dir"]
    model_name = repo_id.split("/")[-1] if repo_id else Path(folder).name
    labels = [config.id2label[i] for i in range(config.num_labels)]
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hf-hybrid", "hybrid-cnn-lstm", "text-classification", "arxiv", "custom_code"],
        datasets=[dataset_type] if "/" in dataset_type else None,
        metrics=["accuracy", "f1"],
        base_model=base_model,
        model_name=model_name,
        eval_results=eval_results(report, dataset_name, dataset_type),
    )
    weights = config.class_weights
    class_weights = (
        ", ".join(f"{label} {weight:.3g}" for label, weight in zip(labels, weights)) if weights else "none (uniform)"
    )
    thresholds = config.label_thresholds or [0.5] * config.num_labels
    rows = [f"| {name} | {getattr(config, name)} |" for name in CARD_HYPERPARAMETERS]
    rows += [f"| {name} | {settings[name]} |" for name in TRAINING_HYPERPARAMETERS if settings.get(name) is not None]
    if base_model:
        origin = (
            f"Fine-tuned from [{base_model}](https://huggingface.co/{base_model}), keeping its vocabulary: "
            "words that the base model never saw map to `<UNK>`."
        )
    else:
        origin = "Trained from scratch, vocabulary included."
    best_name, best = next(
        (
            (key.removeprefix("best_validation_"), value)
            for key, value in results.items()
            if key.startswith("best_validation_")
        ),
        ("accuracy", None),
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        folder=folder,
        origin=origin,
        lstm_layers=config.lstm_layers,
        kernel_sizes=", ".join(map(str, config.kernel_sizes)),
        wide_branch=config.wide_branch,
        wide_fit=results.get("wide_fit"),
        label_list=", ".join(f"`{label}`" for label in labels),
        dataset_name=dataset_name,
        test_samples=report["num_samples"],
        metrics_table=metrics_table(report),
        best_validation_metric=best_name,
        best_validation_score="n/a" if best is None else f"{best:.4f}",
        multi_label=config.is_multi_label,
        threshold_tuning=results.get("calibration", {}).get("threshold_tuning", "none"),
        label_thresholds=", ".join(f"{label} {threshold:.2f}" for label, threshold in zip(labels, thresholds)),
        threshold_table=threshold_table(results) if config.is_multi_label else "",
        calibration_method=results.get("calibration", {}).get("method", "none"),
        calibration_temperature=f"{config.calibration_temperature:.4f}",
        calibration_table=calibration_table(results),
        coverage_rows=coverage_rows(report),
        training_papers=describe_training_papers(results),
        calibration_fit=describe_calibration_fit(results.get("calibration", {})),
        plots="\n\n".join(f"![{name}]({name})" for name in facts.plots),
        hyperparameter_rows="\n".join(rows),
        class_weights=class_weights,
        embedding_start=describe_embedding_start(results.get("embedding_start"), base_model),
        vocab_size=config.vocab_size,
        max_title_length=config.max_title_length,
        max_abstract_length=config.max_abstract_length,
    )


def describe_calibration_fit(calibration: dict) -> str:
    """What calibration fitted, on how many papers, and what it declined."""
    if "validation_papers" not in calibration:
        return ""
    sentences = [f"Calibration was fitted on the {calibration['validation_papers']:,} papers of the validation split."]
    if "deep_weight" in calibration:
        criterion = (
            "whose decisions score the best validation F1 (mean of micro and macro)"
            if "deep_weight_f1" in calibration
            else "of least validation log-loss"
        )
        sentences.append(
            f"The deep part's scores count {calibration['deep_weight']:g} times in their sum with the wide branch's "
            f"(`deep_weight` in `config.json`): of 0, 0.1, ..., 1, the weight {criterion}, so the "
            "deep part's correction of the wide branch is kept only as far as those papers say it helps."
        )
    if "temperature_declined" in calibration:
        sentences.append(
            f"The temperature fitted there ({calibration['temperature_declined']:.4f}) would have made their "
            "expected calibration error worse, so it was not applied (1.0)."
        )
    return " ".join(sentences)


def describe_embedding_start(embedding_start: dict | None, base_model: str | None) -> str:
    """One sentence: where the embedding's starting vectors came from, and how much of the vocabulary they covered."""
    if base_model:
        return f"The embedding started from {base_model}'s."
    if embedding_start is None:
        return "The embedding started from random N(0, 1) vectors."
    parameters = embedding_start["parameters"]
    if embedding_start["source"] == "word2vec":
        origin = (
            f"{parameters['dimension']}-d word2vec {parameters['algorithm']} vectors learned from the training split's "
            f"titles and abstracts ({parameters['training_tokens']:,} tokens; window {parameters['window']}, "
            f"{parameters['negative']} negative samples, {parameters['epochs']} epochs, seed {parameters['seed']})"
        )
    else:
        origin = f"the word vectors of `{Path(embedding_start['source']).name}`"
    return (
        f"The embedding started from {origin}, which covered {embedding_start['vocabulary_coverage']:.1%} of the "
        f"vocabulary and {embedding_start['training_token_coverage']:.1%} of the training tokens; the other words "
        "started from random vectors of the same mean norm."
    )
