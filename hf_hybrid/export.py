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

from pathlib import Path

import torch

ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_int8.onnx"


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
            for tensor, value in ((title_input_ids, pad), (title_attention_mask, 0),
                                  (abstract_input_ids, pad), (abstract_attention_mask, 0))
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


def export_onnx(model, tokenizer, output_dir: str | Path, quantize: str | None = None) -> Path:
    """Writes `model.onnx` (and `model_int8.onnx` with `quantize="int8"`), the tokenizer and the config
    to `output_dir`; returns the path of the model to serve."""
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
    example = tokenizer(["a first title", "second"], ["an abstract of some words", "short one"],
                        padding=True, return_tensors="pt")
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
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = output_dir / QUANTIZED_FILE
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        return quantized
    return path
