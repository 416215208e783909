"""Calibrated probabilities: the temperature's fit, where the model applies it, the calibration scores, and the
decisions users take with them (top-k, abstaining below a threshold)."""

import json

import numpy as np
import pytest
import torch
from conftest import SAVED_TEMPERATURE

from hf_hybrid import HybridCNNLSTMForSequenceClassification
from hf_hybrid.calibration import coverage_table, fit_temperature
from hf_hybrid.cli import main
from hf_hybrid.evaluation import classification_metric, evaluation_report
from hf_hybrid.model import ArxivClassificationPipeline

PAPER = {"title": "Deep nets for images", "abstract": "We train convolutional networks on pixels and scenes."}


def test_expected_calibration_error_is_the_hand_computed_one():
    # Top probabilities 0.96 (right), 0.94 (wrong), 0.55 (right), 0.52 (right): three bins of 15 are filled,
    # (0.9333, 1] with mean 0.95 and accuracy 0.5, (0.5333, 0.6] and (0.4667, 0.5333] with one right paper each.
    probabilities = [[0.96, 0.04], [0.06, 0.94], [0.55, 0.45], [0.48, 0.52]]
    scores = classification_metric().compute(
        predictions=[0, 1, 0, 1], references=[0, 0, 0, 1], label_names=["a", "b"], probabilities=probabilities
    )
    hand = (2 * abs(0.95 - 0.5) + abs(0.55 - 1.0) + abs(0.52 - 1.0)) / 4
    assert scores["expected_calibration_error"] == pytest.approx(hand)
    brier = np.mean([2 * 0.04**2, 2 * 0.94**2, 2 * 0.45**2, 2 * 0.48**2])
    assert scores["brier_score"] == pytest.approx(brier)
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.96, 0.06, 0.55, 0.52])))
    assert scores["mean_confidence"] == pytest.approx(np.mean([0.96, 0.94, 0.55, 0.52]))
    filled = [b for b in scores["calibration_bins"] if b["count"]]
    assert [(b["count"], round(b["accuracy"], 3)) for b in filled] == [(1, 1.0), (1, 1.0), (2, 0.5)]
    assert len(scores["calibration_bins"]) == 15


def test_the_metric_refuses_probabilities_that_are_not_the_predictions():
    with pytest.raises(ValueError, match="argmax of probabilities"):
        classification_metric().compute(
            predictions=[1], references=[0], label_names=["a", "b"], probabilities=[[0.9, 0.1]]
        )


def test_fit_temperature_recovers_the_temperature_that_made_the_scores_overconfident():
    rng = np.random.default_rng(0)
    calibrated = rng.normal(size=(20_000, 4)) * 2
    probabilities = np.exp(calibrated) / np.exp(calibrated).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in probabilities])
    assert fit_temperature(3.0 * calibrated, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(calibrated, labels) == pytest.approx(1.0, rel=0.05)


def test_calibration_lowers_the_log_loss_and_keeps_every_label():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2_000, 3)) * 8  # far too sure of itself
    labels = np.where(rng.random(2_000) < 0.7, logits.argmax(axis=1), rng.integers(0, 3, 2_000))
    temperature = fit_temperature(logits, labels)
    before, after = (evaluation_report(labels, scores, ["a", "b", "c"]) for scores in (logits, logits / temperature))
    assert temperature > 1 and after["log_loss"] < before["log_loss"]
    assert after["accuracy"] == before["accuracy"]


def test_coverage_counts_the_papers_at_or_above_each_threshold():
    logits = np.log([[0.95, 0.05], [0.6, 0.4], [0.25, 0.75], [0.08, 0.92]])
    rows = coverage_table(logits, [0, 1, 1, 0], thresholds=(0.5, 0.7, 0.9))
    assert rows == [
        {"threshold": 0.5, "labelled_share": 1.0, "accuracy": 0.5},
        {"threshold": 0.7, "labelled_share": pytest.approx(0.75), "accuracy": pytest.approx(2 / 3)},
        {"threshold": 0.9, "labelled_share": 0.5, "accuracy": 0.5},
    ]


def test_the_model_divides_its_raw_scores_by_the_temperature_and_its_loss_does_not(make_tiny_config, tiny_tokenizer):
    inputs = tiny_tokenizer(
        ["deep nets", "a parser"], ["pixels and scenes", "tokens"], padding=True, return_tensors="pt"
    )
    labels = torch.tensor([0, 1])
    outputs = {}
    for temperature in (1.0, 2.5):
        torch.manual_seed(0)
        config = make_tiny_config(wide_branch=True, wide_bigram_buckets=64, calibration_temperature=temperature)
        model = HybridCNNLSTMForSequenceClassification(config).eval()
        with torch.no_grad():
            model.wide.weight.normal_()
            outputs[temperature] = model(**inputs, labels=labels)
    torch.testing.assert_close(outputs[2.5].logits, outputs[1.0].logits / 2.5)
    torch.testing.assert_close(outputs[2.5].loss, outputs[1.0].loss)
    torch.testing.assert_close(outputs[2.5].wide_logits, outputs[1.0].wide_logits)


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), "2", True])
def test_config_refuses_a_temperature_that_is_not_a_positive_number(make_tiny_config, temperature):
    with pytest.raises(ValueError, match="`calibration_temperature` must be a positive number"):
        make_tiny_config(calibration_temperature=temperature)


def test_the_temperature_survives_save_and_load(saved_model, saved_model_dir, tiny_tokenizer):
    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(saved_model_dir).eval()
    assert reloaded.config.calibration_temperature == SAVED_TEMPERATURE
    assert json.loads((saved_model_dir / "config.json").read_text())["calibration_temperature"] == SAVED_TEMPERATURE
    inputs = tiny_tokenizer([PAPER["title"]], [PAPER["abstract"]], return_tensors="pt")
    with torch.no_grad():
        # Loaded weights may sit differently in memory, which can change float32 summation order in the last bit.
        torch.testing.assert_close(reloaded(**inputs).logits, saved_model(**inputs).logits)


@pytest.fixture
def classify(saved_model, tiny_tokenizer):
    return ArxivClassificationPipeline(model=saved_model, tokenizer=tiny_tokenizer)


def test_pipeline_scores_are_the_softmax_of_the_calibrated_logits(classify, saved_model, tiny_tokenizer):
    with torch.no_grad():
        logits = saved_model(**tiny_tokenizer([PAPER["title"]], [PAPER["abstract"]], return_tensors="pt")).logits
    expected = logits[0].softmax(-1)
    result = classify(PAPER)
    assert list(result["scores"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    hotter = (logits[0] * SAVED_TEMPERATURE).softmax(-1)  # what an uncalibrated model would say
    assert result["score"] < hotter.max().item()


def test_threshold_abstains_exactly_below_it(classify):
    score = classify(PAPER)["score"]
    below, at = classify(PAPER, threshold=min(1.0, score + 1e-6)), classify(PAPER, threshold=score)
    assert below["label"] is None and below["needs_review"] is True and below["score"] == score
    assert at["label"] is not None and at["needs_review"] is False
    assert "needs_review" not in classify(PAPER)


def test_top_k_gives_k_labels_best_first(classify, saved_model):
    result = classify(PAPER, top_k=2)
    ranked = sorted(result["scores"].items(), key=lambda item: -item[1])[:2]
    assert [(entry["label"], entry["score"]) for entry in result["top_labels"]] == ranked
    assert result["top_labels"][0]["label"] == result["label"]
    with pytest.raises(ValueError, match="`top_k` must be a whole number from 1 to"):
        classify(PAPER, top_k=saved_model.config.num_labels + 1)
    with pytest.raises(ValueError, match="`threshold` must be a probability"):
        classify(PAPER, threshold=1.5)


def test_predict_command_top_k_and_threshold(saved_model_dir, capsys):
    args = ["predict", "--model", str(saved_model_dir), "--title", PAPER["title"], "--abstract", PAPER["abstract"]]
    assert main([*args, "--top_k", "2", "--threshold", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] is None and result["needs_review"] is True and len(result["top_labels"]) == 2
    assert main([*args, "--top_k", "99"]) == 1
    assert "--top_k 99: the model has only" in capsys.readouterr().err
    assert main([*args, "--threshold", "1.2"]) == 1
    assert "--threshold must be from 0 to 1" in capsys.readouterr().err
