"""Training through the `Trainer`: the recipe, the restored best epoch, and the output folder it leaves."""

import contextlib
import dataclasses
import functools
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_dataset
from papers import make_papers, write_papers_csv
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser

import hf_hybrid.trainer as trainer_module
import hf_hybrid.training as training_module
from hf_hybrid.class_weights import parse_class_weights, resolve_class_weights
from hf_hybrid.data import load_papers, tokenize_papers
from hf_hybrid.errors import UserError
from hf_hybrid.evaluation import predict_logits
from hf_hybrid.hub import pushed_files
from hf_hybrid.loading import load_trained
from hf_hybrid.model import HybridCNNLSTMForSequenceClassification
from hf_hybrid.model_card import CARD_HYPERPARAMETERS, ModelCardFacts, build_model_card
from hf_hybrid.recipes import MULTI_LABEL_CHANGES, RECIPES
from hf_hybrid.trainer import HybridTrainer
from hf_hybrid.training import train_model
from hf_hybrid.training_args import (
    MODEL_HYPERPARAMETERS,
    DataArguments,
    FinetuneArguments,
    HybridTrainingArguments,
    ModelArguments,
    parse_training_arguments,
)

TINY_MODEL = dict(
    embed_dim=16,
    num_filters=8,
    lstm_hidden=8,
    lstm_layers=1,
    classifier_hidden_sizes=[16],
    vocab_size=500,
    min_frequency=1,
    wide_bigram_buckets=256,
)
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle"}


def tiny_run(output_dir, train_file, **overrides):
    # Small batches: BatchNorm's running statistics need a few dozen steps before evaluation can use them, and
    # tiny models start slowly: early stopping waits for all 6 epochs.
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=6,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        seed=0,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        early_stopping_patience=6,
        # The held-out run's model is saved, as on a large table: the final fit has tests of its own.
        final_fit="none",
    )
    settings.update(overrides)
    return HybridTrainingArguments(**settings)


@pytest.fixture(scope="module")
def unbalanced_csv(tmp_path_factory):
    papers = make_papers(40, labels=("cs.AI", "cs.CL", "cs.CV"))
    papers = [p for p in papers if p["category"] != "cs.AI"] + [p for p in papers if p["category"] == "cs.AI"][:20]
    return write_papers_csv(tmp_path_factory.mktemp("data") / "papers.csv", papers)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, unbalanced_csv):
    output_dir = tmp_path_factory.mktemp("trained")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = train_model(
            ModelArguments(**TINY_MODEL),
            DataArguments(train_file=str(unbalanced_csv)),
            tiny_run(output_dir, unbalanced_csv),
        )
    return output_dir, report, printed.getvalue()


def test_output_folder_is_complete_and_free_of_pickles(trained):
    output_dir = trained[0]
    names = {path.name for path in output_dir.iterdir()}
    expected = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "configuration_hybrid_cnn_lstm.py",
        "modeling_hybrid_cnn_lstm.py",
        "layers_hybrid_cnn_lstm.py",
        "loading_hybrid_cnn_lstm.py",
        "folding_hybrid_cnn_lstm.py",
        "tokenization_hybrid_cnn_lstm.py",
        "pipeline_arxiv_classification.py",
        "handler.py",
        "eval_results.json",
        "classification_report.txt",
        "training_args.json",
        "training_history.png",
        "confusion_matrix.png",
        "attention.png",
        "calibration.png",
        "train_results.json",
        "test_results.json",
        "all_results.json",
        "trainer_state.json",
    }
    assert names == expected
    assert pushed_files(output_dir) == sorted(names)  # a push sends the whole folder
    assert not [name for name in names if Path(name).suffix in PICKLE_SUFFIXES or name.startswith("checkpoint-")]
    for plot in ("training_history.png", "confusion_matrix.png", "attention.png", "calibration.png"):
        assert (output_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((output_dir / "training_args.json").read_text())["learning_rate"] == 1e-2


def test_tiny_model_learns_the_made_up_topics(trained):
    output_dir, report, printed = trained
    assert (
        f"Test accuracy {report['accuracy']:.4f}; the model card ({output_dir / 'README.md'}) says "
        f"{round(report['accuracy'], 4)}." in printed
    )
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["test"]["accuracy"] == report["accuracy"] > 0.6
    assert set(results["test"]["per_class"]) == {"cs.AI", "cs.CL", "cs.CV"}
    assert np.sum(results["test"]["confusion_matrix"]) == results["test"]["num_samples"] == 15
    assert "cs.AI" in (output_dir / "classification_report.txt").read_text()
    # The Trainer's own metrics and state, beside the full report.
    test_metrics = json.loads((output_dir / "test_results.json").read_text())
    assert test_metrics["test_accuracy"] == pytest.approx(report["accuracy"])
    assert json.loads((output_dir / "all_results.json").read_text())["test_accuracy"] == test_metrics["test_accuracy"]
    assert "train_loss" in json.loads((output_dir / "train_results.json").read_text())
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["log_history"] == results["log_history"]
    assert state["best_metric"] == results["best_validation_accuracy"]


def test_history_has_train_and_validation_accuracy_per_epoch(trained):
    results = json.loads((trained[0] / "eval_results.json").read_text())
    history = results["log_history"]
    train_epochs = [entry["epoch"] for entry in history if "train_accuracy" in entry]
    eval_epochs = [entry["epoch"] for entry in history if "eval_accuracy" in entry]
    assert train_epochs == eval_epochs == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert results["best_validation_accuracy"] == max(e["eval_accuracy"] for e in history if "eval_accuracy" in e)


def test_balanced_class_weights_come_from_the_training_split(trained, unbalanced_csv):
    config = json.loads((trained[0] / "config.json").read_text())
    counts = np.bincount(load_papers(DataArguments(train_file=str(unbalanced_csv)), seed=0)["train"]["labels"])
    assert counts[0] < counts[1]  # 20 cs.AI papers against 40 of each other class
    assert config["class_weights"] == pytest.approx(list(counts.sum() / (3 * counts)), rel=1e-5)


def test_model_card_has_model_index_metrics(trained):
    card = (trained[0] / "README.md").read_text()
    front_matter = card.split("---")[1]
    assert "model-index" in front_matter and "type: accuracy" in front_matter and "config: macro" in front_matter
    assert "trust_remote_code=True" in card
    # A folder not trained for a Hub repo: the card is titled with the folder's name, its examples load the folder
    # (no revision: a folder has none), and its link to the speeds points at the benchmarks page.
    assert card.split("---\n", 2)[2].lstrip().startswith(f"# {trained[0].name}\n")
    assert f'folder = "{trained[0]}"  # this folder' in card and "model=folder" in card and "revision" not in card
    assert "https://github.com/hf-hybrid/hf-hybrid/blob/main/docs/benchmarks.md#speed" in card
    assert "path/to/this/folder" not in card and "# hybrid-cnn-lstm" not in card and "README gives" not in card
    assert "cs.AI 1.64" in card  # the class weights, by label
    # The card's facts are the model's own: its config (a 1-layer LSTM here) and no speed it did not measure.
    assert "a 1-layer bidirectional LSTM" in card and " ms " not in card
    config = json.loads((trained[0] / "config.json").read_text())
    for name in CARD_HYPERPARAMETERS:
        row = f"| {name} | {config[name]} |".replace("[", "").replace("]", "")
        assert row in card.replace("[", "").replace("]", "")
    not_in_table = {
        "pad_token_id",
        "class_weights",
        "calibration_temperature",
        "deep_weight",
        "label_thresholds",
        "calibrated_weights_sha256",
    }
    assert set(CARD_HYPERPARAMETERS) == set(MODEL_HYPERPARAMETERS) - not_in_table


def test_saved_folder_reloads_with_auto_classes(trained, unbalanced_csv):
    output_dir = trained[0]
    tokenizer = AutoTokenizer.from_pretrained(output_dir, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True).eval()
    assert tokenizer.max_title_length == 30 and model.config.id2label == {0: "cs.AI", 1: "cs.CL", 2: "cs.CV"}
    batch = tokenizer(["Image segmentation of video scenes"], ["pixels detection camera depth"], return_tensors="pt")
    assert model.config.id2label[int(model(**batch).logits.argmax())] == "cs.CV"


def test_the_best_epoch_is_restored_not_the_last(tmp_path, unbalanced_csv, monkeypatch):
    """Validation accuracy made to fall after epoch 1: early stopping ends the run after two more epochs,
    the plateau scheduler halves the learning rate, and the saved weights are epoch 1's."""
    calls = []

    def falling_accuracy(prediction):
        calls.append(1)
        return {"accuracy": 1.0 / len(calls)}

    monkeypatch.setattr(trainer_module, "compute_metrics", falling_accuracy)
    data = DataArguments(train_file=str(unbalanced_csv))
    plateau = dict(lr_scheduler_type="reduce_lr_on_plateau", warmup_steps=0)
    train_model(
        ModelArguments(**TINY_MODEL),
        data,
        tiny_run(
            tmp_path / "long",
            unbalanced_csv,
            num_train_epochs=6,
            early_stopping_patience=2,
            lr_scheduler_kwargs={"mode": "max", "factor": 0.5, "patience": 0},
            **plateau,
        ),
    )
    calls.clear()
    train_model(
        ModelArguments(**TINY_MODEL),
        data,
        tiny_run(tmp_path / "one_epoch", unbalanced_csv, num_train_epochs=1, **plateau),
    )

    results = json.loads((tmp_path / "long" / "eval_results.json").read_text())
    assert results["epochs_trained"] == 3.0
    rates = [entry["learning_rate"] for entry in results["log_history"] if "train_accuracy" in entry]
    assert rates == [1e-2, 1e-2, 5e-3]
    restored = load_file(tmp_path / "long" / "model.safetensors")
    first_epoch = load_file(tmp_path / "one_epoch" / "model.safetensors")
    assert restored.keys() == first_epoch.keys()
    for name in restored:
        assert np.array_equal(restored[name].numpy(), first_epoch[name].numpy()), name


def test_length_grouped_batches_group_by_title_length(tmp_path, unbalanced_csv, monkeypatch):
    """`--train_sampling_strategy group_by_length` batches papers of similar title
    length: the Trainer reads lengths from the tokenizer's first input, the title ids."""
    batches = []
    original_forward = HybridCNNLSTMForSequenceClassification.forward

    @functools.wraps(original_forward)  # the Trainer keeps the dataset columns that forward's signature names
    def recording_forward(self, **inputs):
        if self.training:
            lengths = inputs["title_attention_mask"].sum(-1)
            batches.append((int(lengths.min()), int(lengths.max())))
        return original_forward(self, **inputs)

    monkeypatch.setattr(HybridCNNLSTMForSequenceClassification, "forward", recording_forward)
    train_model(
        ModelArguments(**TINY_MODEL),
        DataArguments(train_file=str(unbalanced_csv)),
        tiny_run(tmp_path / "grouped", unbalanced_csv, num_train_epochs=1, train_sampling_strategy="group_by_length"),
    )
    # The sampler sorts "mega-batches" of this many batches by length, longest first.
    train_papers = len(load_papers(DataArguments(train_file=str(unbalanced_csv)), seed=0)["train"])
    per_mega_batch = max(min(train_papers // (8 * 4), 50), 1)
    assert per_mega_batch > 1
    for start in range(0, len(batches), per_mega_batch):
        group = batches[start : start + per_mega_batch]
        assert all(longer[0] >= shorter[1] for longer, shorter in zip(group, group[1:])), batches
    assert (tmp_path / "grouped" / "model.safetensors").is_file()


def test_class_weights_by_name_balanced_or_none():
    labels = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]

    def weights(flag, train_labels):
        return resolve_class_weights(parse_class_weights(flag), labels, train_labels)

    assert weights(["cs.AI=2.0"], [0, 1, 2, 3]) == [2.0, 1.0, 1.0, 1.0]
    assert weights(["cs.LG=0.5", "cs.AI=3"], [0]) == [3.0, 1.0, 1.0, 0.5]
    assert weights(["none"], [0, 1]) is None and weights([], [0, 1]) is None
    assert weights(["balanced"], [0, 0, 0, 1, 2, 3]) == [0.5, 1.5, 1.5, 1.5]
    # a class absent from this training split weighs nothing, instead of dividing by zero
    assert weights(["balanced"], [0, 1, 1]) == [1.5, 0.75, 0.0, 0.0]
    with pytest.raises(
        UserError, match=r"--class_weights cs.XX: no such label: expected LABEL=WEIGHT with LABEL one of \['cs.AI'"
    ):
        weights(["cs.XX=2"], [0])
    for flag in (["cs.AI=heavy"], ["cs.AI=-1"], ["cs.AI"], ["=2"], ["balanced", "cs.AI=2"]):
        with pytest.raises(UserError, match="expected 'balanced', 'none', or LABEL=WEIGHT"):
            parse_class_weights(flag)


def test_class_weights_are_parsed_once_into_a_rule():
    """The arguments hold the parsed rule, which the resolver takes as it is (parsing it again changes nothing)."""
    (model_args,) = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(["--class_weights", "cs.AI=2"])
    assert model_args.class_weights == {"cs.AI": 2.0} == parse_class_weights(model_args.class_weights)
    assert (
        ModelArguments().class_weights == "balanced" and ModelArguments(class_weights=["none"]).class_weights == "none"
    )
    assert FinetuneArguments(model="m", class_weights=["cs.CL=0.5"]).class_weights == {"cs.CL": 0.5}
    assert dataclasses.replace(model_args).class_weights == {"cs.AI": 2.0}


def test_class_weights_default_to_balanced_for_single_label_and_none_for_multi_label():
    assert ModelArguments().class_weights == "balanced"
    assert ModelArguments(problem_type="multi_label_classification").class_weights == "none"
    assert ModelArguments(problem_type="multi_label_classification", class_weights=["balanced"]).class_weights == (
        "balanced"
    )
    # fine-tuning takes the default of the model's problem type, which only its config tells
    assert FinetuneArguments(model="m").class_weights is None


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_a_recipe_gives_the_same_arguments_from_python_as_from_the_command_line(recipe, tmp_path):
    types = (ModelArguments, DataArguments, HybridTrainingArguments)
    model_flags, _, flags = parse_training_arguments(
        types, ["--recipe", recipe, "--output_dir", str(tmp_path)], prog="test"
    )
    built = HybridTrainingArguments(output_dir=str(tmp_path), recipe=recipe)
    assert built.to_dict() == flags.to_dict()
    assert ModelArguments().for_recipe(recipe) == model_flags.for_recipe(recipe)
    for name, value in RECIPES[recipe].items():
        arguments = built if hasattr(built, name) else ModelArguments().for_recipe(recipe)
        assert getattr(arguments, name) == value, name


def test_from_python_the_notebook_recipe_sets_its_schedule_and_explicit_values_win(tmp_path):
    notebook = HybridTrainingArguments(output_dir=str(tmp_path), recipe="notebook")
    assert (notebook.lr_scheduler_type, notebook.num_train_epochs, notebook.warmup_steps) == (
        "reduce_lr_on_plateau",
        20.0,
        0,
    )
    assert notebook.early_stopping_patience == 5 and notebook.weight_decay == 1e-4
    assert notebook.lr_scheduler_kwargs == {"mode": "max", "factor": 0.5, "patience": 3}
    explicit = HybridTrainingArguments(
        output_dir=str(tmp_path), recipe="notebook", num_train_epochs=2.0, warmup_steps=0.05
    )
    assert (explicit.num_train_epochs, explicit.warmup_steps, explicit.lr_scheduler_type) == (
        2.0,
        0.05,
        "reduce_lr_on_plateau",
    )
    # A model flag given at the default recipe's value still wins over the notebook's.
    model_args = ModelArguments(wide_branch=True, init_embeddings="word2vec").for_recipe("notebook")
    assert (model_args.wide_branch, model_args.init_embeddings) == (True, "word2vec")
    (parsed,) = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(["--wide_branch"])
    assert parsed.for_recipe("notebook").wide_branch is True
    assert HybridTrainingArguments(output_dir=str(tmp_path)).lr_scheduler_kwargs == {}  # a fresh dict each time
    assert RECIPES["default"]["lr_scheduler_kwargs"] == {}


def test_a_multi_label_model_takes_the_recipes_multi_label_values_unless_given(tmp_path):
    assert MULTI_LABEL_CHANGES["default"] == {"num_train_epochs": 3.0}
    types = (ModelArguments, DataArguments, HybridTrainingArguments)
    cases = [
        ([], "default", 2.0, 3.0),
        (["--num_train_epochs", "2"], "default", 2.0, 2.0),
        ([], "notebook", 20.0, 20.0),
    ]
    for flags, recipe, single_label, multi_label in cases:
        *_, training_args = parse_training_arguments(
            types, ["--recipe", recipe, "--output_dir", str(tmp_path), *flags], prog="test"
        )
        assert training_args.num_train_epochs == single_label, (flags, recipe)
        training_args.use_multi_label_values()
        assert training_args.num_train_epochs == multi_label, (flags, recipe)
    changed_since = HybridTrainingArguments(output_dir=str(tmp_path))
    changed_since.num_train_epochs = 5.0
    changed_since.use_multi_label_values()
    assert changed_since.num_train_epochs == 5.0
    help_text = HybridTrainingArguments.__dataclass_fields__["num_train_epochs"].metadata["help"]
    assert help_text.endswith("Default: the --recipe's (default: 2.0, multi-label 3.0; notebook: 20.0).")


def test_every_recipe_sets_the_same_options():
    assert all(values.keys() == RECIPES["default"].keys() for values in RECIPES.values())
    model_fields = {field.name for field in dataclasses.fields(ModelArguments)}
    training_fields = {field.name for field in dataclasses.fields(HybridTrainingArguments)}
    for name in RECIPES["default"]:
        assert (name in model_fields) != (name in training_fields), name  # each option belongs to one dataclass


def test_the_trainers_label_smoothing_is_refused_for_the_models_own(tmp_path):
    with pytest.raises(
        UserError, match="--label_smoothing_factor is not used by hf-hybrid models: give --label_smoothing"
    ):
        HybridTrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1)


def optimizer_groups(model, training_args) -> tuple[torch.optim.Optimizer, dict[str, float]]:
    trainer = HybridTrainer(model=model, args=training_args, eval_dataset=[])  # evaluation is never run here
    optimizer = trainer.create_optimizer()
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return optimizer, {names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}


def test_default_recipe_decays_weights_but_not_the_embedding_biases_or_norms(tiny_model, tmp_path):
    optimizer, decay = optimizer_groups(tiny_model, HybridTrainingArguments(output_dir=str(tmp_path)))
    assert type(optimizer) is torch.optim.AdamW and decay.keys() == dict(tiny_model.named_parameters()).keys()
    spared = {name for name, weight_decay in decay.items() if weight_decay == 0.0}
    norms = {
        f"{name}.{kind}"
        for name, module in tiny_model.named_modules()
        if isinstance(module, torch.nn.BatchNorm1d)
        for kind in ("weight", "bias")
    }
    biases = {name for name in decay if "bias" in name}
    assert spared == {"hybrid.embedding.weight"} | norms | biases
    assert "hybrid.abstract_encoder.convs.0.weight" in decay.keys() - spared
    assert "hybrid.title_encoder.lstm.forward_layers.0.weight_ih_l0" in decay.keys() - spared
    assert {decay[name] for name in decay.keys() - spared} == {0.01}


def test_the_wide_branch_trains_at_its_own_learning_rate_on_the_same_schedule(make_tiny_config, tmp_path):
    model = HybridCNNLSTMForSequenceClassification(make_tiny_config(wide_branch=True, wide_bigram_buckets=64))
    args = HybridTrainingArguments(output_dir=str(tmp_path), wide_learning_rate=0.02)
    trainer = HybridTrainer(model=model, args=args, eval_dataset=[])
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    rates = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert len(rates) == len(list(model.parameters()))  # every parameter in exactly one group
    assert rates[id(model.wide.weight)] == 0.0 and rates[id(model.hybrid.embedding.weight)] == 0.0  # warm-up
    for _ in range(50):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    rates = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert rates[id(model.wide.weight)] == pytest.approx(0.02 * 50 / 95)
    assert rates[id(model.hybrid.embedding.weight)] == pytest.approx(1e-3 * 50 / 95)
    _, decay = optimizer_groups(model, args)
    assert decay["wide.weight"] == 0.01


def test_notebook_recipe_gives_the_notebooks_optimizer_schedule_and_embedding(tiny_model, tmp_path):
    types = (ModelArguments, DataArguments, HybridTrainingArguments)
    model_args, _, notebook = parse_training_arguments(
        types, ["--recipe", "notebook", "--output_dir", str(tmp_path)], prog="test"
    )
    model_args = model_args.for_recipe(notebook.recipe)
    assert model_args.init_embeddings == "random" and model_args.wide_branch is False  # the notebook's model
    assert (notebook.learning_rate, notebook.weight_decay, notebook.num_train_epochs) == (1e-3, 1e-4, 20.0)
    assert notebook.lr_scheduler_type == "reduce_lr_on_plateau" and notebook.early_stopping_patience == 5
    assert notebook.lr_scheduler_kwargs == {"mode": "max", "factor": 0.5, "patience": 3}
    optimizer, decay = optimizer_groups(tiny_model, notebook)
    assert type(optimizer) is torch.optim.Adam and set(decay.values()) == {1e-4}  # L2 on every parameter
    trainer = HybridTrainer(model=tiny_model, args=notebook, eval_dataset=[])
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    _, _, explicit = parse_training_arguments(
        types, ["--recipe", "notebook", "--num_train_epochs", "3", "--output_dir", str(tmp_path)], prog="test"
    )
    assert explicit.num_train_epochs == 3 and explicit.lr_scheduler_type == "reduce_lr_on_plateau"
    model_args, _, default = parse_training_arguments(types, ["--output_dir", str(tmp_path)], prog="test")
    model_args = model_args.for_recipe(default.recipe)
    assert (default.recipe, default.lr_scheduler_type, model_args.init_embeddings, model_args.wide_branch) == (
        "default",
        "linear",
        "word2vec",
        True,
    )
    trainer = HybridTrainer(model=tiny_model, args=default, eval_dataset=[])
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    rates = []
    for _ in range(10):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates[0] == 0.0 and rates[5] == pytest.approx(1e-3)  # 5 warm-up steps of 100, then linear decay
    assert rates[9] == pytest.approx(1e-3 * 95 / 95 * (100 - 9) / 95)


def test_a_wide_model_learns_its_idf_from_the_training_split_and_reloads(tmp_path, unbalanced_csv):
    output_dir = tmp_path / "wide"
    train_model(
        ModelArguments(**TINY_MODEL),
        DataArguments(train_file=str(unbalanced_csv)),
        tiny_run(output_dir, unbalanced_csv, num_train_epochs=2),
    )
    model = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir, trust_remote_code=True)
    idf = model.wide.idf
    vocab = tokenizer.get_vocab()
    assert idf[vocab["<PAD>"]].item() == idf[vocab["<UNK>"]].item() == 0.0  # in no paper; not a word
    assert idf[vocab["we"]].item() < idf[vocab["planning"]].item()  # a common word weighs less than a topic word
    assert model.wide.weight.abs().sum() > 0


def test_a_frozen_embedding_keeps_its_start_for_the_first_epochs(tmp_path, unbalanced_csv, monkeypatch):
    started, snapshots = {}, []
    original_start, original_init = training_module.start_embedding, HybridTrainer.__init__

    def remember_start(model, *args, **kwargs):
        coverage = original_start(model, *args, **kwargs)
        started.update(model=model, weight=model.get_input_embeddings().weight.detach().clone())
        return coverage

    class Snapshot(trainer_module.TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            snapshots.append(model.get_input_embeddings().weight.detach().clone())

    def init_with_snapshot(self, *args, callbacks=None, **kwargs):
        original_init(self, *args, callbacks=[*callbacks, Snapshot()], **kwargs)

    monkeypatch.setattr(training_module, "start_embedding", remember_start)
    monkeypatch.setattr(HybridTrainer, "__init__", init_with_snapshot)
    train_model(
        ModelArguments(**TINY_MODEL),
        DataArguments(train_file=str(unbalanced_csv)),
        tiny_run(tmp_path / "frozen", unbalanced_csv, num_train_epochs=3, freeze_embedding_epochs=2),
    )
    assert torch.equal(snapshots[0], started["weight"]) and torch.equal(snapshots[1], started["weight"])
    assert not torch.equal(snapshots[2], started["weight"])  # the third epoch trains it
    # All train again after the frozen epochs, but the wide branch, fitted first and kept fixed.
    trainable = {name: p.requires_grad for name, p in started["model"].named_parameters()}
    assert trainable.pop("wide.bias") is trainable.pop("wide.weight") is False and all(trainable.values())


def test_final_fit_trains_on_every_paper_and_keeps_the_held_out_metrics(tmp_path, unbalanced_csv):
    output_dir = tmp_path / "final"
    with contextlib.redirect_stdout(io.StringIO()):
        # Without the wide branch the deep part is the whole model, so the final fit trains it again.
        report = train_model(
            ModelArguments(**TINY_MODEL, wide_branch=False),
            DataArguments(train_file=str(unbalanced_csv)),
            tiny_run(output_dir, unbalanced_csv, num_train_epochs=3, final_fit="all"),
        )
    results = json.loads((output_dir / "eval_results.json").read_text())
    final, state = results["final_fit"], json.loads((output_dir / "trainer_state.json").read_text())
    labelled = len(load_dataset("csv", data_files=str(unbalanced_csv))["train"])
    assert final["train_papers"] == labelled and final["splits"] == ["train", "validation", "test"]
    # The held-out run's report and history are what the folder keeps; the weights are the final fit's.
    assert results["test"]["accuracy"] == report["accuracy"] and state["best_metric"] is not None
    assert final["epochs"] == round(
        next(e["epoch"] for e in state["log_history"] if e.get("eval_accuracy") == state["best_metric"])
    )
    config = json.loads((output_dir / "config.json").read_text())
    assert config["calibration_temperature"] == results["calibration"]["temperature"] != 1.0
    card = (output_dir / "README.md").read_text()
    assert "**the saved weights are not those of the run measured above.**" in card
    assert f"on {labelled} papers (train + validation + test splits)" in card
    assert not (output_dir / "final-fit").exists()


def test_final_fit_train_validation_measures_the_final_model_on_the_test_split(tmp_path, unbalanced_csv):
    output_dir = tmp_path / "final"
    with contextlib.redirect_stdout(io.StringIO()):
        report = train_model(
            ModelArguments(**TINY_MODEL),
            DataArguments(train_file=str(unbalanced_csv)),
            tiny_run(output_dir, unbalanced_csv, num_train_epochs=2, final_fit="train_validation"),
        )
    final = json.loads((output_dir / "eval_results.json").read_text())["final_fit"]
    assert final["splits"] == ["train", "validation"]
    assert final["test"]["num_samples"] == report["num_samples"]
    tokenizer, model = load_trained(str(output_dir))
    logits = predict_logits(
        model,
        tokenizer,
        tokenize_papers(load_papers(DataArguments(train_file=str(unbalanced_csv)), seed=0)["test"], tokenizer),
    )
    assert final["test"]["accuracy"] == pytest.approx(
        float(
            (
                logits.argmax(-1)
                == np.asarray(load_papers(DataArguments(train_file=str(unbalanced_csv)), seed=0)["test"]["labels"])
            ).mean()
        )
    )


def test_a_folder_trained_before_calibration_still_gets_a_card(trained, tmp_path):
    folder = tmp_path / "older"
    shutil.copytree(trained[0], folder)
    results = json.loads((folder / "eval_results.json").read_text())
    del results["calibration"]
    for key in ("uncalibrated", "coverage", "expected_calibration_error", "log_loss"):
        del results["test"][key]
    (folder / "eval_results.json").write_text(json.dumps(results))
    card = str(build_model_card(ModelCardFacts.from_folder(folder)))
    assert "Not measured: the model was trained by an hf-hybrid without calibration." in card
    assert "expected_calibration_error" not in card.split("---")[1]
