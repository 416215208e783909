"""`hf-hybrid export`: an ONNX model (optionally int8-quantized) that ONNX Runtime runs."""

import argparse

from ..loading import load_trained
from . import description


def run_export(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid export", description=description("export"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--quantize", choices=["int8"], help="also write a dynamically int8-quantized model")
    parser.add_argument("--output_dir", help="default: <model folder or repo name>-onnx")
    args = parser.parse_args(argv)
    from ..export import export_onnx

    tokenizer, model = load_trained(args.model, args.revision)
    output_dir = args.output_dir or f"{args.model.rstrip('/').split('/')[-1]}-onnx"
    print(export_onnx(model, tokenizer, output_dir, quantize=args.quantize))
