"""hf-hybrid's benchmarks, one subcommand per open question (each a module of `scripts/benchmarks/`):

    python scripts/benchmark.py speed [--model DIR] [--train_flags "--recipe notebook"] [--output_json speed.json]
    python scripts/benchmark.py onnx --model DIR [--output_json onnx.json]
    python scripts/benchmark.py accuracy [--train_flags "--num_train_epochs 2"] [--output_json accuracy.json]
    python scripts/benchmark.py small-data --data arxiv_multilabel.csv --base_data arxiv_cs.csv --base_model DIR
    python scripts/benchmark.py serve [--model DIR] [--clients 1,8,64] [--output_json serve.json]
    python scripts/benchmark.py stock-tools --model DIR --train_file TRAIN --validation_file VALIDATION

`speed` times training steps and inference against the research notebook's pipeline, `onnx` compares ONNX
Runtime with PyTorch, `accuracy` compares hf-hybrid with TF-IDF + LinearSVC, `small-data` draws a learning curve
against TF-IDF + logistic regression on a few papers per category, `serve` loads `hf-hybrid serve` with concurrent
clients beside the bulk path, `stock-tools` reads a text given alone several ways and runs a stock `Trainer` at
learning rate 0. `python scripts/benchmark.py QUESTION --help` lists a subcommand's flags. Every run prints the
CPU's flags, read at run time, above its figures, and `--output_json` keeps them with the figures.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks import accuracy, onnx, serve, small_data, speed, stock_tools
from benchmarks.common import common_arguments, cpu_description

QUESTIONS = {
    "speed": speed,
    "onnx": onnx,
    "accuracy": accuracy,
    "small-data": small_data,
    "serve": serve,
    "stock-tools": stock_tools,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subcommands = parser.add_subparsers(dest="question", required=True, metavar="QUESTION")
    for name, module in QUESTIONS.items():
        subcommand = subcommands.add_parser(
            name,
            parents=[common_arguments()],
            help=module.__doc__.splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )  # --model != --model_output_dir
        module.add_arguments(subcommand)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    question = QUESTIONS[args.question]
    with tempfile.TemporaryDirectory(prefix=f"hf_hybrid_{args.question}_") as temporary:
        args.workdir = args.workdir or Path(temporary)
        report = {**question.run(args), "cpu": cpu_description(args.threads)}
    cpu = report["cpu"]
    print(
        f"CPU flags: {' '.join(cpu['flags']) or 'unknown'} (torch kernels: {cpu['torch_cpu_capability']}), "
        f"{cpu['threads']} threads of {cpu['cpu_count']} CPUs\n\n{question.table(report)}"
    )
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
