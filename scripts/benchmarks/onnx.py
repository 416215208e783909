"""ONNX Runtime against PyTorch: a trained model's parity and speed, exported as `hf-hybrid export` does.

`--model DIR` is exported with `hf_hybrid.export.export_onnx(..., quantize="int8")`; PyTorch, ONNX Runtime with
the float32 graph and with the int8 (dynamic quantization) graph each run in a fresh process on the test part
of the standard split (papers the model never saw; see `common.measure_engine`). Parity with PyTorch: float32
exact (labels >= 99.9%, logits within 1e-4); int8 approximate (labels >= 99%, at most 0.5 accuracy points lost);
either fails if ONNX Runtime logs a warning or an error while it runs (`onnxruntime_messages` in the report).
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    APPROXIMATE_PARITY,
    EXACT_PARITY,
    compare_engines,
    engine_arguments,
    engines_table,
    save_model_under_test,
    standard_split,
)


def add_arguments(parser) -> None:
    engine_arguments(parser)
    parser.add_argument("--model", type=Path, required=True, help="a trained hf-hybrid model folder")


def run(args) -> dict:
    import onnxruntime

    from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from hf_hybrid.export import ONNX_FILE, export_onnx

    workdir = args.workdir
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = HybridCNNLSTMTokenizer.from_pretrained(args.model)
    model_dir = save_model_under_test(model, tokenizer, workdir / "model")
    int8_path = export_onnx(model, tokenizer, workdir / "onnx", quantize="int8")
    test = standard_split(args, [model.config.id2label[i] for i in range(model.config.num_labels)])["test"]
    del model
    setups = {
        "pytorch": {"kind": "pytorch"},
        "onnx_fp32": {"kind": "onnx", "onnx_path": str(workdir / "onnx" / ONNX_FILE)},
        "onnx_int8": {"kind": "onnx", "onnx_path": str(int8_path)},
    }
    engines = compare_engines(
        {name: {"model_dir": model_dir, **setup} for name, setup in setups.items()},
        test,
        args,
        parity={"onnx_fp32": EXACT_PARITY, "onnx_int8": APPROXIMATE_PARITY},
    )
    return {
        "question": "onnx",
        "model": str(args.model),
        "test_papers": len(test),
        "batch_size": args.batch_size,
        "onnxruntime": onnxruntime.__version__,
        "engines": engines,
    }


def table(report: dict) -> str:
    return (
        f"Model {report['model']}: {report['test_papers']} test papers, batches of {report['batch_size']}, "
        f"onnxruntime {report['onnxruntime']}\n\n{engines_table(report['engines'], 'pytorch')}"
    )
