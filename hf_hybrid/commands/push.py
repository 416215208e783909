"""`hf-hybrid push`: a trained model folder onto the Hugging Face Hub."""

import argparse

from . import description


def run_push(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hf-hybrid push", description=description("push"))
    parser.add_argument("--model", required=True, help="the trained model folder")
    parser.add_argument("--repo_id", required=True, help="e.g. your-name/arxiv-hybrid")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", help="push to this branch (created if needed)")
    parser.add_argument("--commit_message")
    parser.add_argument("--token", help="default: the logged-in token or HF_TOKEN")
    args = parser.parse_args(argv)
    from ..hub import push_model_folder

    url = push_model_folder(args.model, args.repo_id, args.private, args.revision, args.commit_message, args.token)
    print(url)
