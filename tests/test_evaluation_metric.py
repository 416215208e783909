"""The packaged `evaluate` metric module: it loads with no network, its numbers are scikit-learn's, and both the
`Trainer`'s `compute_metrics` and `evaluation_report` (training's test report, `hf-hybrid evaluate`) use it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from transformers import EvalPrediction

from hf_hybrid import evaluation

LABEL_NAMES = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]
# Made up: every class has hits and misses; cs.LG is never predicted, cs.CV never confused with cs.AI.
REFERENCES = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 1, 2, 3]
PREDICTIONS = [0, 1, 0, 1, 1, 0, 1, 2, 2, 1, 0, 2, 0, 1, 2, 1]

# A fresh process whose every network connection fails, with its caches in a folder of the test's own.
OFFLINE_LOAD = """
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse
import evaluate

metric = evaluate.load(sys.argv[1], keep_in_memory=True)
print(json.dumps(metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], label_names=["a", "b"])))
"""


NUM_LABELS = len(LABEL_NAMES)


def logits_of(predictions, num_labels=NUM_LABELS):
    return np.eye(num_labels)[predictions] * 3.0 - 1.0


def test_metric_module_loads_from_its_folder_with_no_network(tmp_path):
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, str(evaluation.METRIC_PATH)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.splitlines()[-1])
    assert scores["accuracy"] == 0.75 and scores["confusion_matrix"] == [[2, 1], [0, 1]]
    # evaluate imported its copy of the module from the cache under HF_HOME, nowhere else
    assert list((tmp_path / "hf_home").rglob("classification_report.py"))


def test_report_equals_scikit_learn_on_a_made_up_example():
    report = evaluation.evaluation_report(REFERENCES, logits_of(PREDICTIONS), LABEL_NAMES)
    assert report["accuracy"] == pytest.approx(accuracy_score(REFERENCES, PREDICTIONS))
    assert report["f1_macro"] == pytest.approx(f1_score(REFERENCES, PREDICTIONS, average="macro", zero_division=0))
    assert report["f1_weighted"] == pytest.approx(
        f1_score(REFERENCES, PREDICTIONS, average="weighted", zero_division=0)
    )
    assert report["confusion_matrix"] == confusion_matrix(REFERENCES, PREDICTIONS).tolist()
    expected = classification_report(
        REFERENCES, PREDICTIONS, target_names=LABEL_NAMES, output_dict=True, zero_division=0
    )
    for name in LABEL_NAMES:
        assert report["per_class"][name] == pytest.approx(expected[name]), name
    assert report["per_class"]["cs.LG"]["recall"] == 0.0 and report["per_class"]["cs.LG"]["support"] == 3
    assert (report["num_samples"], report["label_names"]) == (16, LABEL_NAMES)
    json.dumps(report)  # JSON-ready: plain floats, ints and lists


def test_report_lists_every_class_even_one_absent_from_the_papers():
    report = evaluation.evaluation_report([0, 1, 1], logits_of([0, 1, 0], 3), ["a", "b", "c"])
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}
    assert report["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_trainer_metrics_are_the_reports_summary():
    metrics = evaluation.compute_metrics(
        EvalPrediction(predictions=logits_of(PREDICTIONS), label_ids=np.array(REFERENCES))
    )
    report = evaluation.evaluation_report(REFERENCES, logits_of(PREDICTIONS), LABEL_NAMES)
    assert metrics == {name: report[name] for name in ("accuracy", "f1_macro", "f1_weighted")}
    assert all(type(value) is float for value in metrics.values())


def test_scores_go_through_the_evaluate_module(monkeypatch):
    computed = []
    metric = evaluation.classification_metric()
    original = metric.compute
    monkeypatch.setattr(metric, "compute", lambda **kwargs: computed.append(kwargs) or original(**kwargs))
    evaluation.evaluation_report(REFERENCES, logits_of(PREDICTIONS), LABEL_NAMES)
    evaluation.compute_metrics(EvalPrediction(predictions=logits_of(PREDICTIONS), label_ids=np.array(REFERENCES)))
    assert len(computed) == 2 and list(computed[0]["predictions"]) == PREDICTIONS
    assert metric.name == "classification_report"
