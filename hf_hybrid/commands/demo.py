"""`hf-hybrid demo`: a model in a Gradio web page, or a Hub Space written for a pushed model (`--write_space`)."""

import argparse
from pathlib import Path

from ..errors import UserError
from ..loading import load_trained
from . import description


def run_demo(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid demo", description=description("demo"))
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id (a repo id for --write_space)")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo (a Space pins it to its commit)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--write_space", metavar="DIR", help="write a Hub Space for the pushed model here instead")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --write_space: replace the Space's files (README.md, app.py, ...) already in DIR",
    )
    args = parser.parse_args(argv)
    from .. import demo  # Gradio is an optional extra: only this command needs it
    from ..hub import pinned_commit
    from ..model import ArxivClassificationPipeline

    demo.require_gradio()
    if args.write_space:
        if Path(args.model).exists():
            raise UserError(f"{args.model} is a local folder: a Space loads the model from the Hub, give its repo id")
        demo.check_space_folder(args.write_space, args.overwrite)  # before asking the Hub anything
        commit = pinned_commit(args.model, args.revision)
        check_space_can_load(args.model, commit)
        print(
            demo.write_space(
                args.write_space, args.model, commit, space_labels(args.model, commit), overwrite=args.overwrite
            )
        )
        return
    tokenizer, model = load_trained(args.model, args.revision)
    page = demo.build_demo(ArxivClassificationPipeline(model=model, tokenizer=tokenizer))
    page.launch(server_name=args.host, server_port=args.port)


def check_space_can_load(repo_id: str, commit: str) -> None:
    """Refuses a repo that lacks a file the Space needs to load the model, naming the missing files."""
    from ..hub import repo_files
    from ..model import CODE_FILES, HANDLER_FILE

    # What the Space's `pipeline(..., trust_remote_code=True)` reads from the model repo (weights: one file or shards).
    code = [name for name in CODE_FILES if name != HANDLER_FILE]
    space_needs = ["config.json", "tokenizer.json", "tokenizer_config.json", *code]
    files = set(repo_files(repo_id, commit))
    missing = [name for name in space_needs if name not in files]
    if not {"model.safetensors", "model.safetensors.index.json"} & files:
        missing.append("model.safetensors")
    if missing:
        raise UserError(
            f"{repo_id} at commit {commit} has no {', '.join(missing)}, so a Space could not load it: "
            "push the complete model folder (hf-hybrid push) and try again"
        )


def space_labels(repo_id: str, commit: str) -> list[str]:
    from ..model import HybridCNNLSTMConfig

    return list(HybridCNNLSTMConfig.from_pretrained(repo_id, revision=commit).id2label.values())
