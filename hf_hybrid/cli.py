"""The `hf-hybrid` command: train, finetune, evaluate, predict, push, export, demo, serve (`hf_hybrid.commands`).

`hf-hybrid train` and `scripts/train.py` share one `HfArgumentParser` over `ModelArguments`,
`DataArguments` and `TrainingArguments`, so every `TrainingArguments` flag works. Errors are one
readable line on stderr and a non-zero exit status, not a traceback (a bug in hf-hybrid keeps its traceback).
This module imports only the standard library and the table of commands: each command's module is imported when it
runs, so that `hf-hybrid --help` starts at once.
"""

import importlib
import logging
import os
import sys
from collections.abc import Callable

from .commands import COMMANDS
from .errors import HubError, UserError


def usage() -> str:
    lines = ["usage: hf-hybrid COMMAND [--help] [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {command.description}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def runner(name: str) -> Callable[[list[str]], None]:
    """The function that runs `hf-hybrid NAME`, its module imported now."""
    command = COMMANDS[name]
    return getattr(importlib.import_module(f".commands.{command.module}", __package__), command.function)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-hybrid: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("hf_hybrid").setLevel(logging.INFO)
    # transformers at its warning level, for the commands that import it (set now, if it is imported already).
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_warning()
    else:
        os.environ["TRANSFORMERS_VERBOSITY"] = "warning"
    try:
        runner(command)(rest)
    # A user's mistake, a file or model that cannot be read, the Hub, a missing optional extra: one line. Anything
    # else is a bug, whose traceback is what a report needs.
    except (UserError, HubError, OSError, ImportError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"hf-hybrid {command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hf-hybrid {command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
