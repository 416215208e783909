"""Training on a few hundred papers: the training length rule and early stopping, the final fit on every paper of a
small table, calibration that declines what it cannot support, the deep part weighed on validation, and fine-tuning
to new labels from the base model's encoders."""

import json

import numpy as np
import pytest
import torch
from papers import make_papers, write_papers_csv
from safetensors.torch import load_file

import hf_hybrid.held_out as held_out_module
from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification
from hf_hybrid.calibration import DEEP_WEIGHT_GRID, choose_deep_weight
from hf_hybrid.loading import load_trained
from hf_hybrid.training import base_model_loader, train_model
from hf_hybrid.training_args import (
    SMALL_TABLE_PAPERS,
    DataArguments,
    FinetuneArguments,
    HybridTrainingArguments,
    ModelArguments,
)

TINY_MODEL = dict(
    embed_dim=16,
    num_filters=8,
    lstm_hidden=8,
    lstm_layers=1,
    classifier_hidden_sizes=[16],
    min_frequency=1,
    wide_bigram_buckets=256,
    init_embeddings="random",
)


def default_run(output_dir, **overrides) -> HybridTrainingArguments:
    """The default recipe's arguments, with a batch a tiny table has steps of."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=16,
        seed=0,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    return HybridTrainingArguments(**{**settings, **overrides})


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    return write_papers_csv(tmp_path_factory.mktemp("data") / "papers.csv", make_papers(40))


@pytest.fixture(scope="module")
def default_trained(tmp_path_factory, small_table):
    """A tiny model trained on 120 papers with the default recipe's length rule, stopping and final fit."""
    output_dir = tmp_path_factory.mktemp("default") / "model"
    report = train_model(
        ModelArguments(**TINY_MODEL), DataArguments(train_file=str(small_table)), default_run(output_dir)
    )
    return output_dir, report


def test_the_length_rule_makes_small_tables_train_more_epochs_and_large_ones_the_recipes(tmp_path):
    args = default_run(tmp_path, per_device_train_batch_size=64)
    assert (args.num_train_epochs, args.min_train_steps, args.max_train_epochs) == (2.0, 800, 20.0)
    args.fit_epochs_to(28_560)  # 446 steps an epoch: the recipe's 2 epochs already make 800 steps
    assert args.num_train_epochs == 2.0
    args = default_run(tmp_path, per_device_train_batch_size=64)
    args.fit_epochs_to(5_000)  # 78 steps an epoch: 11 epochs make 800
    assert args.num_train_epochs == 11.0
    args = default_run(tmp_path, per_device_train_batch_size=64)
    args.fit_epochs_to(559)  # 8 steps an epoch: 100 epochs would, the rule stops at 20
    assert args.num_train_epochs == 20.0
    multi_label = default_run(tmp_path, per_device_train_batch_size=64)
    multi_label.use_multi_label_values()
    multi_label.fit_epochs_to(21_000)
    assert multi_label.num_train_epochs == 3.0
    # Epochs given, or steps, are trained as given.
    for given in (default_run(tmp_path, num_train_epochs=2), default_run(tmp_path, max_steps=5)):
        before = given.num_train_epochs
        given.fit_epochs_to(100)
        assert given.num_train_epochs == before
    # Set by hand after the arguments were built, too.
    by_hand = default_run(tmp_path)
    by_hand.num_train_epochs = 4.0
    by_hand.fit_epochs_to(100)
    assert by_hand.num_train_epochs == 4.0


def test_the_help_states_the_length_rule():
    from hf_hybrid.cli import main

    with pytest.raises(SystemExit), pytest.MonkeyPatch.context() as patch:
        import io

        printed = io.StringIO()
        patch.setattr("sys.stdout", printed)
        main(["train", "--help"])
    text = " ".join(printed.getvalue().split())
    assert (
        "as many epochs as it takes to make --min_train_steps optimizer steps, but at most --max_train_epochs" in text
    )
    assert "default: 800; notebook: 0" in text and "default: 20.0; notebook: 20.0" in text


def test_the_default_run_stops_early_and_its_final_model_trained_on_every_paper(default_trained, small_table):
    output_dir, report = default_trained
    settings = json.loads((output_dir / "training_args.json").read_text())
    results = json.loads((output_dir / "eval_results.json").read_text())
    history = [entry for entry in results["log_history"] if "eval_accuracy" in entry]
    # 84 training papers at 16 a batch: 5 steps an epoch, so the rule asks for its most, 20 epochs ...
    assert settings["num_train_epochs"] == 20.0
    # ... and early stopping ends them 2 evaluations after the best one.
    best = max(range(len(history)), key=lambda i: (history[i]["eval_accuracy"], -i))
    assert len(history) == best + 1 + settings["early_stopping_patience"] < 20
    assert results["epochs_trained"] == len(history)
    # A table of 120 papers is small: the saved model was trained again on all of them (counted), for the best
    # epoch count, and the card says which papers the weights saw and which gave the metrics.
    papers = results["papers"]
    assert papers == {"train": 84, "validation": 18, "test": 18}
    final = results["final_fit"]
    assert final["mode"] == "all" and final["train_papers"] == sum(papers.values()) == 120
    card = " ".join((output_dir / "README.md").read_text().split())
    assert (
        "The 18 validation papers chose the best epoch and fitted the calibration, and the 18 test papers gave the "
        "numbers above; **the saved weights are not those of the run measured above.**" in card
    )
    # On these papers validation gives the deep part no weight (the wide branch gets all of them right), so the
    # final fit fits the wide branch alone; test_training has the final fit that trains the deep part again.
    assert results["calibration"]["deep_weight"] == 0.0 and final["epochs"] == 0
    assert "trained again from scratch, its wide branch alone (validation gave the deep part no weight)" in card
    assert report["num_samples"] == 18


def test_only_a_small_table_gets_the_final_fit_by_default(tmp_path):
    args = default_run(tmp_path)
    assert args.final_fit == "auto"
    assert args.final_fit_for(SMALL_TABLE_PAPERS - 1) == "all"
    assert args.final_fit_for(SMALL_TABLE_PAPERS) == "none"
    assert default_run(tmp_path, final_fit="none").final_fit_for(100) == "none"
    assert default_run(tmp_path, final_fit="train_validation").final_fit_for(10**6) == "train_validation"


def test_a_temperature_that_would_worsen_the_validation_ece_is_not_applied(tmp_path, small_table, monkeypatch):
    # A temperature fitted on few papers can lower their log-loss and still calibrate them worse; this one
    # (dividing every score by 50: near-uniform probabilities on a model that is mostly right) certainly does.
    monkeypatch.setattr(held_out_module, "fit_temperature", lambda logits, labels: 50.0)
    output_dir = tmp_path / "model"
    train_model(
        ModelArguments(**TINY_MODEL),
        DataArguments(train_file=str(small_table)),
        default_run(output_dir, num_train_epochs=3, final_fit="none"),
    )
    calibration = json.loads((output_dir / "eval_results.json").read_text())["calibration"]
    assert calibration["temperature_declined"] == 50.0 and calibration["temperature"] == 1.0
    after, before = calibration["validation"]["after"], calibration["validation"]["before"]
    assert after == before  # nothing applied
    assert json.loads((output_dir / "config.json").read_text())["calibration_temperature"] == 1.0
    card = " ".join((output_dir / "README.md").read_text().split())
    assert "Calibration was fitted on the 18 papers of the validation split." in card
    assert "The temperature fitted there (50.0000) would have made their expected calibration error worse" in card


def test_the_deep_parts_weight_is_the_one_validation_supports():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    informative = np.eye(3)[labels] * 4.0 + rng.normal(0, 1, size=(300, 3))
    noise = rng.normal(0, 3, size=(300, 3))
    # A deep part of noise beside an informative wide branch counts nothing; an informative one counts whole.
    weight, losses = choose_deep_weight(noise, informative, labels)
    assert weight == 0.0 and set(losses) == {f"{w:g}" for w in DEEP_WEIGHT_GRID}
    assert losses["0"] == min(losses.values())
    weight, _ = choose_deep_weight(informative, noise * 0.1, labels)
    assert weight == 1.0


def test_a_multi_label_models_deep_weight_is_chosen_by_the_f1_of_its_decisions():
    from sklearn.metrics import f1_score

    from hf_hybrid.calibration import decision_f1, tune_thresholds
    from hf_hybrid.model.pipeline_arxiv_classification import decide_labels

    rng = np.random.default_rng(0)
    labels = np.stack([rng.random(400) < 0.5, rng.random(400) < 0.5, rng.random(400) < 0.06], axis=1).astype(int)
    # The wide branch knows the two common labels and only the rare one's base rate; the deep part knows the rare one.
    wide = np.where(labels == 1, 2.0, -2.0) + rng.normal(0, 1, size=labels.shape)
    wide[:, 2] = -2.8
    deep = np.zeros(labels.shape)
    deep[:, 2] = np.where(labels[:, 2] == 1, 6.0, -1.0) + rng.normal(0, 1, size=400)
    weight, scores = choose_deep_weight(deep, wide, labels)
    assert set(scores) == {f"{w:g}" for w in DEEP_WEIGHT_GRID} and weight == 1.0
    assert scores["1"] == max(scores.values()) > scores["0"]
    # A deep part of noise only costs the decisions: it counts nothing.
    weight, scores = choose_deep_weight(rng.normal(0, 4, size=labels.shape), wide + deep, labels)
    assert weight == 0.0 and scores["0"] == max(scores.values())
    # The score is scikit-learn's micro- and macro-F1, averaged, of the decisions at the tuned threshold.
    probabilities = 1 / (1 + np.exp(-(wide + deep)))
    decided = decide_labels(probabilities, tune_thresholds(probabilities, labels, per_label=False)).numpy()
    expected = (f1_score(labels, decided, average="micro") + f1_score(labels, decided, average="macro")) / 2
    assert decision_f1(wide + deep, labels) == pytest.approx(expected, abs=1e-9)


def test_the_model_weighs_its_deep_part_by_deep_weight(make_tiny_config, tiny_tokenizer):
    config = make_tiny_config(wide_branch=True, wide_bigram_buckets=64)
    torch.manual_seed(0)
    model = HybridCNNLSTMForSequenceClassification(config).eval()
    torch.nn.init.normal_(model.wide.weight)
    batch = tiny_tokenizer(
        ["Attention is all you need"], ["We propose attention for translation."], return_tensors="pt"
    )
    whole = model(**batch)
    model.config.deep_weight = 0.25
    weighed = model(**batch)
    deep = whole.logits - whole.wide_logits
    torch.testing.assert_close(weighed.logits, 0.25 * deep + whole.wide_logits)
    with pytest.raises(ValueError, match="`deep_weight` must be a number from 0 to 1, got 1.5"):
        HybridCNNLSTMConfig(vocab_size=10, deep_weight=1.5)


@pytest.mark.parametrize("new_labels", [["cs.RO", "cs.SE"], ["cs.RO", "cs.SE", "cs.DB"]])
def test_fine_tuning_to_new_labels_starts_from_the_base_models_encoders(default_trained, new_labels):
    base_dir, _ = default_trained
    _, base = load_trained(str(base_dir))
    config = HybridCNNLSTMConfig.from_pretrained(base_dir)
    config.id2label = dict(enumerate(new_labels))
    config.label2id = {name: i for i, name in enumerate(new_labels)}
    tokenizer = object()  # the loader hands the tokenizer back untouched
    model, returned, _ = base_model_loader(FinetuneArguments(model=str(base_dir)), config, tokenizer, True)(None)
    assert returned is tokenizer and model.config is not config and model.config.id2label == config.id2label
    state, base_state = model.state_dict(), load_file(base_dir / "model.safetensors")
    kept = [name for name in base_state if name.startswith("hybrid.") or name == "wide.idf"]
    assert any(name.startswith("hybrid.title_encoder") for name in kept)
    assert any(name.startswith("hybrid.abstract_encoder") for name in kept)
    for name in kept:
        torch.testing.assert_close(state[name], base_state[name], msg=name)
    # New labels (also as many as the base model's 3) start a new output layer and wide branch.
    output = f"classifier.{len(model.classifier) - 1}"
    assert state[f"{output}.weight"].shape[0] == len(new_labels)
    if len(new_labels) == base.config.num_labels:
        assert not torch.equal(state[f"{output}.weight"], base_state[f"{output}.weight"])
    assert not state["wide.weight"].any() and not state["wide.bias"].any()


def test_a_model_saved_before_sublinear_weighting_keeps_its_own(tmp_path, make_tiny_config):
    config = make_tiny_config(wide_branch=True, wide_bigram_buckets=64)
    assert config.wide_sublinear_tf
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["wide_sublinear_tf"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert HybridCNNLSTMConfig.from_pretrained(tmp_path).wide_sublinear_tf is False


def test_the_notebook_recipe_on_a_small_table_fits_its_final_model_at_a_constant_rate(tmp_path, small_table):
    # Its plateau scheduler halves the rate on validation accuracy, which the final fit has none of.
    output_dir = tmp_path / "model"
    train_model(
        ModelArguments(**TINY_MODEL),
        DataArguments(train_file=str(small_table)),
        default_run(output_dir, recipe="notebook", num_train_epochs=2),
    )
    final = json.loads((output_dir / "eval_results.json").read_text())["final_fit"]
    assert final["mode"] == "all" and final["train_papers"] == 120 and final["epochs"] >= 1


def test_the_card_names_the_criterion_that_chose_the_deep_parts_weight():
    from hf_hybrid.model_card import describe_calibration_fit

    single = describe_calibration_fit({"validation_papers": 120, "deep_weight": 0.3, "deep_weight_log_loss": {}})
    multi = describe_calibration_fit({"validation_papers": 120, "deep_weight": 1.0, "deep_weight_f1": {}})
    assert "count 0.3 times" in single and "the weight of least validation log-loss" in single
    assert "count 1 times" in multi and "the weight whose decisions score the best validation F1" in multi
    assert "log-loss" not in multi
