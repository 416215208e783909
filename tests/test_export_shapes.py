"""The exported graph has no fixed intermediate shape: ONNX Runtime, with its default session options, runs it for any
title length, batch size and number of labels without a warning, and the export refuses a graph that warns or
disagrees with PyTorch."""

import contextlib
import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import TINY_ABSTRACTS, TINY_TITLES, with_trained_batch_norms

import hf_hybrid.export
from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
from hf_hybrid.export import ONNX_FILE, QUANTIZED_FILE, ExportCheckError, export_onnx, run_graph

MAX_TITLE_WORDS = 30
MAX_ABSTRACT_WORDS = 40
LABEL_COUNTS = (2, 3, 4, 20)
TITLE_WORDS = (0, 1, 2, MAX_TITLE_WORDS)
BATCH_SIZES = (1, 64)
ORT_MESSAGE = re.compile(r"\[[WEF]:onnxruntime:")


@pytest.fixture(scope="module", autouse=True)
def onnxruntime_warnings_shown():
    """Warnings are ONNX Runtime's default severity; set it explicitly, so that no other test can hide them."""
    onnxruntime.set_default_logger_severity(2)


@pytest.fixture(scope="module")
def tokenizer():
    return HybridCNNLSTMTokenizer.train_from_iterator(
        TINY_TITLES + TINY_ABSTRACTS,
        min_frequency=1,
        max_title_length=MAX_TITLE_WORDS,
        max_abstract_length=MAX_ABSTRACT_WORDS,
    )


def tiny_model(tokenizer, num_labels: int, wide_branch: bool = True):
    """A tiny model whose every part moves the logits: BatchNorm statistics and wide weights as after training."""
    config = HybridCNNLSTMConfig(
        vocab_size=len(tokenizer),
        embed_dim=16,
        num_filters=8,
        lstm_hidden=8,
        classifier_hidden_sizes=[16, 8],
        id2label={i: f"label{i}" for i in range(num_labels)},
        max_title_length=MAX_TITLE_WORDS,
        max_abstract_length=MAX_ABSTRACT_WORDS,
        wide_branch=wide_branch,
        wide_bigram_buckets=64,
        calibration_temperature=1.3,
    )
    torch.manual_seed(num_labels)
    model = with_trained_batch_norms(HybridCNNLSTMForSequenceClassification(config))
    if wide_branch:
        with torch.no_grad():
            model.wide.weight.normal_()
            model.wide.idf.uniform_(1.0, 3.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tokenizer, tmp_path_factory):
    """num_labels -> (model, folder holding model.onnx and model_int8.onnx), exported on first use."""
    made = {}

    def get(num_labels: int):
        if num_labels not in made:
            model = tiny_model(tokenizer, num_labels)
            folder = tmp_path_factory.mktemp(f"onnx-{num_labels}-labels")
            export_onnx(model, tokenizer, folder, quantize="int8")
            made[num_labels] = model, folder
        return made[num_labels]

    return get


def papers_of(tokenizer, title_words: int, batch_size: int) -> tuple[list[str], list[str]]:
    words = sorted(word for word in tokenizer.get_vocab() if not word.startswith("<"))
    titles = [" ".join(words[(i + k) % len(words)] for k in range(title_words)) for i in range(batch_size)]
    abstracts = [
        " ".join(words[(3 * i + k) % len(words)] for k in range(1 + i % MAX_ABSTRACT_WORDS)) for i in range(batch_size)
    ]
    return titles, abstracts


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=lambda n: f"batch-{n}")
@pytest.mark.parametrize("title_words", TITLE_WORDS, ids=lambda n: f"title-{n}-words")
@pytest.mark.parametrize("graph", [ONNX_FILE, QUANTIZED_FILE])
@pytest.mark.parametrize("num_labels", LABEL_COUNTS, ids=lambda n: f"{n}-labels")
def test_default_session_runs_any_title_and_batch_without_a_warning(
    exported, tokenizer, num_labels, graph, title_words, batch_size, capfd
):
    model, folder = exported(num_labels)
    titles, abstracts = papers_of(tokenizer, title_words, batch_size)
    capfd.readouterr()
    session = onnxruntime.InferenceSession(str(folder / graph))  # as users run it: nothing else
    logits = session.run(["logits"], dict(tokenizer(titles, abstracts, padding=True, return_tensors="np")))[0]
    messages = [line for line in capfd.readouterr().err.splitlines() if ORT_MESSAGE.search(line)]
    assert messages == []
    assert logits.shape == (batch_size, num_labels) and np.isfinite(logits).all()
    if graph == ONNX_FILE:
        with torch.inference_mode():
            expected = model(**tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-4)
        assert (logits.argmax(1) == expected.argmax(1)).all()


def test_the_notebook_model_runs_one_word_and_empty_titles_with_four_labels(tokenizer, tmp_path, capfd):
    model = tiny_model(tokenizer, 4, wide_branch=False)
    export_onnx(model, tokenizer, tmp_path)
    capfd.readouterr()
    session = onnxruntime.InferenceSession(str(tmp_path / ONNX_FILE))
    for title_words in TITLE_WORDS:
        titles, abstracts = papers_of(tokenizer, title_words, 1)
        logits = session.run(["logits"], dict(tokenizer(titles, abstracts, padding=True, return_tensors="np")))[0]
        with torch.inference_mode():
            expected = model(**tokenizer(titles, abstracts, padding=True, return_tensors="pt")).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-4)
    assert not ORT_MESSAGE.search(capfd.readouterr().err)


def declared_shapes_that_do_not_hold(path, tokenizer, title_words: int, batch_size: int) -> list[str]:
    """The intermediate values whose shape in the graph's `value_info` is not the shape they get: a fixed dimension
    of another size, or one symbolic dimension that takes two sizes. Every value is made an output to be seen."""
    graph = onnx.load(str(path))
    computed = {name for node in graph.graph.node for name in node.output}
    declared = {info.name: info for info in graph.graph.value_info if info.name in computed}
    graph.graph.output.extend(declared.values())
    session = onnxruntime.InferenceSession(graph.SerializeToString())
    titles, abstracts = papers_of(tokenizer, title_words, batch_size)
    inputs = dict(tokenizer(titles, abstracts, padding=True, return_tensors="np"))
    values = dict(zip(declared, session.run(list(declared), inputs)))
    sizes = {"batch": batch_size, "title": inputs["title_input_ids"].shape[1]}
    sizes["abstract"] = inputs["abstract_input_ids"].shape[1]
    wrong = []
    for name, info in declared.items():
        shape = np.shape(values[name])
        for axis, dim in enumerate(info.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value != shape[axis]:
                wrong.append(f"{name} axis {axis}: declared {dim.dim_value}, is {shape[axis]}")
            elif dim.HasField("dim_param") and sizes.setdefault(dim.dim_param, shape[axis]) != shape[axis]:
                wrong.append(f"{name} axis {axis}: {dim.dim_param} = {sizes[dim.dim_param]}, is {shape[axis]}")
    return wrong


@pytest.mark.parametrize("graph", [ONNX_FILE, QUANTIZED_FILE])
def test_no_declared_intermediate_shape_is_taken_from_the_example(exported, tokenizer, graph):
    """The export's example has 3-word titles, 4 positions with the one it adds: a 4-label model is where a length
    fixed at 4 once met the logits' width."""
    _, folder = exported(4)
    for title_words in TITLE_WORDS:
        for batch_size in BATCH_SIZES:
            assert declared_shapes_that_do_not_hold(folder / graph, tokenizer, title_words, batch_size) == []


@contextlib.contextmanager
def lstm_kernel_held_for_the_capture_only():
    """torch 2.13's own export (from a clear kernel cache, whatever ran before): the LSTMs' lengths are recorded as
    the example's."""
    hf_hybrid.export._forget_cached_lstm_kernels()
    yield


@pytest.fixture
def export_without_the_fix(monkeypatch):
    monkeypatch.setattr(hf_hybrid.export, "_dynamic_lstm_lengths", lstm_kernel_held_for_the_capture_only)


def test_the_export_fails_and_writes_nothing_when_onnx_runtime_cannot_run_the_graph(
    export_without_the_fix, tokenizer, tmp_path
):
    (tmp_path / ONNX_FILE).write_bytes(b"the previous export")
    with pytest.raises(ExportCheckError, match=r"model\.onnx: ONNX Runtime .* failed on papers of up to 0 title"):
        export_onnx(tiny_model(tokenizer, 4), tokenizer, tmp_path, quantize="int8")
    assert (tmp_path / ONNX_FILE).read_bytes() == b"the previous export"
    assert sorted(path.name for path in tmp_path.iterdir()) == [ONNX_FILE]


def test_the_check_fails_when_onnx_runtime_only_warns(export_without_the_fix, tokenizer, tmp_path):
    """Titles longer than the example's run, with a warning for every buffer ONNX Runtime cannot reuse."""
    model = tiny_model(tokenizer, 4)
    hf_hybrid.export._export_graph(model, tokenizer, tmp_path / ONNX_FILE)
    long_titles = list(zip(*papers_of(tokenizer, 10, 64)))
    with pytest.raises(
        ExportCheckError, match=r"logged \d+ warnings and errors, the first: .*\[W:onnxruntime:.*re-use"
    ):
        run_graph(tmp_path / ONNX_FILE, tokenizer, [long_titles])


def test_the_export_fails_when_the_graph_disagrees_with_pytorch(tokenizer, tmp_path, monkeypatch):
    model, other = tiny_model(tokenizer, 3), tiny_model(tokenizer, 3)
    with torch.no_grad():
        other.classifier[-1].weight.mul_(2.0)
    export_graph = hf_hybrid.export._export_graph
    monkeypatch.setattr(hf_hybrid.export, "_export_graph", lambda _, tok, path: export_graph(other, tok, path))
    with pytest.raises(ExportCheckError, match=r"logits differ from PyTorch's by .* \(at most 0.0001 allowed\)"):
        export_onnx(model, tokenizer, tmp_path)
    assert list(tmp_path.iterdir()) == []
