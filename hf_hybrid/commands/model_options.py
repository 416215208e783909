"""What the commands that run a model share: the options that name it and where it runs (`--model`, `--revision`,
`--batch_size`, `--fold_for_inference`, `--device`), and the device they name, refused in one line."""

import argparse
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch


def model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--fold_for_inference",
        nargs="?",
        const="float32",
        choices=["float32", "bfloat16"],
        help="fast CPU path: the embedding folded into the convolutions (tables in float32, "
        "about 600 MB at the default size, or bfloat16, half that)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: cpu, cuda, cuda:N or auto (a CUDA GPU when there is one); on a GPU "
        "the model runs as trained, unfolded",
    )
    return parser


def chosen_device(args) -> "torch.device":
    """The device `--device` names, refused in one line (before the model loads) when this machine has none such, or
    when it is a GPU and the folded CPU path is asked for too."""
    from ..model.handler import select_device

    try:
        device = select_device(args.device)
    except ValueError as error:
        raise UserError(f"--{error}") from error
    if device.type != "cpu" and getattr(args, "fold_for_inference", None):
        raise UserError(
            f"--fold_for_inference is the fast CPU path: on --device {args.device} ({device}) the model runs "
            "unfolded; give one of the two"
        )
    return device


def fold_if_asked(model, args):
    if args.fold_for_inference:
        model.fold_for_inference(args.fold_for_inference)
    return model
