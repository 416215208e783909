"""ONNX export of a trained model, for serving with ONNX Runtime (optionally int8-quantized).

The exported graph takes exactly what the tokenizer returns (`return_tensors="np"`) and outputs
`logits`; batch size and both text lengths are dynamic. The tokenizer and config are saved beside it,
so the folder is all a server needs:

```python
import onnxruntime
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("onnx-folder", trust_remote_code=True)
session = onnxruntime.InferenceSession("onnx-folder/model.onnx")
logits = session.run(["logits"], dict(tokenizer(titles, abstracts, padding=True, return_tensors="np")))[0]
```
"""

import logging
import random
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_int8.onnx"
# README's parity rule for the int8 graph: the float graph's label on at least this share of papers.
INT8_SAME_LABEL = 0.99
# A step must pass the rule by this much on the sample: 512 papers measure a share to about half a point.
INT8_MARGIN = 0.005
SAMPLE_PAPERS = 512
# What int8 quantizes, tried in turn until the rule holds on the sample: every op type ONNX Runtime's dynamic
# quantization knows (Conv, LSTM, MatMul/Gemm), then the LSTMs alone, whose quantization moved no label of the
# tiny models measured while the convolutions' and the dense layers' moved 1-3%.
INT8_STEPS = (("Conv, LSTM and dense layers", None), ("the LSTMs only", ["LSTM"]))


class _LogitsOnly(torch.nn.Module):
    """The classifier with its inputs in the tokenizer's order and one output, as ONNX wants.

    Each field gets one padding position more (masked out) before the model sees it. The model turns a field of
    no words into one padding position with a Python `if` on its length, which the export traces once, for the
    example's lengths: without this, a batch whose abstracts are all empty reaches the convolutions with length 0
    and ONNX Runtime refuses it ("Invalid input shape" in a Conv node). A masked padding position changes no
    logit: its embedding is zeroed (as the convolutions' own padding), attention and the wide branch skip it, and
    the LSTMs read right-padded sequences within their lengths.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, title_input_ids, title_attention_mask, abstract_input_ids, abstract_attention_mask):
        pad = self.model.config.pad_token_id
        title_input_ids, title_attention_mask, abstract_input_ids, abstract_attention_mask = (
            torch.nn.functional.pad(tensor, (0, 1), value=value)
            for tensor, value in (
                (title_input_ids, pad),
                (title_attention_mask, 0),
                (abstract_input_ids, pad),
                (abstract_attention_mask, 0),
            )
        )
        return self.model(
            title_input_ids=title_input_ids,
            title_attention_mask=title_attention_mask,
            abstract_input_ids=abstract_input_ids,
            abstract_attention_mask=abstract_attention_mask,
        ).logits


def _forget_cached_lstm_kernels():
    """Makes this export resolve the LSTM's kernel afresh, so that its title length stays dynamic.

    With dynamic shapes, `torch.onnx.export` installs a while-loop LSTM kernel for the capture
    (`torch.export._patches._register_rnn_while_loop_decomposition`, torch 2.13) by writing the operator's
    `py_kernels` directly, not through `OpOverload.py_impl`, which is what empties the operator's
    `_dispatch_cache`. The kernel cached by the first export in a process therefore stays: from the second export
    on, the LSTM is traced step by step and the title length of the example is frozen into the graph
    (`test_a_second_export_in_the_same_process_keeps_the_lengths_dynamic` fails without this). No upstream issue
    names this cache; https://github.com/pytorch/pytorch/issues/191855 is the same patch freezing the length on
    a first export (fixed by pytorch/pytorch#193192). Remove this once torch clears the cache itself."""
    for overload in (torch.ops.aten.lstm.input, torch.ops.aten.lstm.data):
        cache = getattr(overload, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()


def export_onnx(
    model, tokenizer, output_dir: str | Path, quantize: str | None = None, sample: list[tuple[str, str]] | None = None
) -> Path:
    """Writes `model.onnx` (and `model_int8.onnx` with `quantize="int8"`), the tokenizer and the config
    to `output_dir`; returns the path of the model to serve.

    The int8 graph is checked against the float one on `sample` ((title, abstract) pairs; default: 512 made-up
    papers of the vocabulary's words): see `quantize_int8`.

    Example (`hf-hybrid export`):

    ```python
    >>> from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer, export_onnx
    >>> model = HybridCNNLSTMForSequenceClassification.from_pretrained("out")  # doctest: +SKIP
    >>> export_onnx(model, HybridCNNLSTMTokenizer.from_pretrained("out"), "out-onnx", quantize="int8")  # doctest: +SKIP
    PosixPath('out-onnx/model_int8.onnx')
    ```
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be int8, got {quantize!r}")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs the onnx extra: pip install 'hf-hybrid[onnx]' ({error})") from None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = list(tokenizer.model_input_names)
    # Two papers of different lengths, so that no dimension is taken for a constant.
    example = tokenizer(
        ["a first title", "second"], ["an abstract of some words", "short one"], padding=True, return_tensors="pt"
    )
    batch, title, abstract = torch.export.Dim("batch"), torch.export.Dim("title"), torch.export.Dim("abstract")
    shapes = {"title": {0: batch, 1: title}, "abstract": {0: batch, 1: abstract}}
    path = output_dir / ONNX_FILE
    _forget_cached_lstm_kernels()
    torch.onnx.export(
        _LogitsOnly(model).eval(),
        tuple(example[name] for name in names),
        str(path),
        dynamo=True,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes={name: shapes[name.split("_")[0]] for name in names},
        external_data=False,
    )
    tokenizer.save_pretrained(output_dir)
    model.config.save_pretrained(output_dir)
    if quantize == "int8":
        quantized = output_dir / QUANTIZED_FILE
        quantize_int8(path, quantized, tokenizer, sample if sample else sample_papers(tokenizer))
        return quantized
    return path


def sample_papers(tokenizer, count: int = SAMPLE_PAPERS, seed: int = 0) -> list[tuple[str, str]]:
    """`count` made-up papers of random vocabulary words, of every length from one word to the longest kept."""
    special = set(tokenizer.all_special_tokens)
    words = sorted(word for word in tokenizer.get_vocab() if word not in special)
    rng = random.Random(seed)
    return [
        (
            " ".join(rng.choices(words, k=rng.randint(1, tokenizer.max_title_length))),
            " ".join(rng.choices(words, k=rng.randint(1, tokenizer.max_abstract_length))),
        )
        for _ in range(count)
    ]


def graph_labels(path: str | Path, tokenizer, papers: list[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
    """The label ONNX Runtime's graph at `path` gives each paper."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = []
    for start in range(0, len(papers), batch_size):
        titles, abstracts = zip(*papers[start : start + batch_size])
        inputs = tokenizer(list(titles), list(abstracts), padding=True, return_tensors="np")
        labels.append(session.run(["logits"], dict(inputs))[0].argmax(axis=1))
    return np.concatenate(labels)


def _wide_branch_nodes(model) -> list[str]:
    """The nodes of the wide branch (by the module scope torch.onnx records): kept in float32. Its weights are
    looked up per paper (GatherND) and summed by a product of two activations, which ONNX Runtime's dynamic
    quantization does not touch today; excluding them keeps it so if it learns to."""
    scopes = (
        (node.name, {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes", ""))
        for node in model.graph.node
    )
    return [name for name, scope in scopes if "model.wide" in scope]


def quantize_int8(path: Path, quantized: Path, tokenizer, papers: list[tuple[str, str]]) -> None:
    """Writes the dynamically int8-quantized graph of `path` to `quantized`, quantizing less (`INT8_STEPS`) until
    it gives the float graph's label on `INT8_SAME_LABEL` (plus `INT8_MARGIN`) of `papers`, read in batches of 64
    as served (dynamic quantization scales each batch by its own range); logs how many labels changed, and warns
    when no step keeps the rule."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_float = _wide_branch_nodes(onnx.load(str(path), load_external_data=False))
    reference = graph_labels(path, tokenizer, papers)
    for what, op_types in INT8_STEPS:
        quantize_dynamic(
            str(path),
            str(quantized),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types,
            nodes_to_exclude=keep_float,
        )
        changed = int((graph_labels(quantized, tokenizer, papers) != reference).sum())
        same = 1 - changed / len(papers)
        summary = (
            f"int8: {changed} of {len(papers)} sample papers change label with {what} quantized "
            f"({100 * same:.1f}% the same as {path.name}"
        )
        if same >= INT8_SAME_LABEL + INT8_MARGIN:
            logger.info(
                "%s; the rule is %.0f%%, kept with a margin of %.1f points)",
                summary,
                100 * INT8_SAME_LABEL,
                100 * INT8_MARGIN,
            )
            return
        logger.info("%s, not above the %.0f%% rule by %.1f points)", summary, 100 * INT8_SAME_LABEL, 100 * INT8_MARGIN)
    logger.warning(
        "%s, below the %.0f%% rule): serve %s, which gives PyTorch's labels", summary, 100 * INT8_SAME_LABEL, path.name
    )
