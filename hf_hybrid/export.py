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
    """The classifier with its inputs in the tokenizer's order and one output, as ONNX wants."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, title_input_ids, title_attention_mask, abstract_input_ids, abstract_attention_mask):
        return self.model(
            title_input_ids=title_input_ids,
            title_attention_mask=title_attention_mask,
            abstract_input_ids=abstract_input_ids,
            abstract_attention_mask=abstract_attention_mask,
        ).logits


def _forget_cached_lstm_kernels():
    """With dynamic shapes, `torch.onnx.export` swaps in a loop-based LSTM kernel for the duration of the
    export, but the operator's dispatch cache keeps the kernel its first export resolved: from the second
    export in a process on, the LSTM is traced step by step and the title length is frozen (torch 2.13).
    Emptying that cache makes every export resolve the kernel afresh."""
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
