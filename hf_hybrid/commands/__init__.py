"""The `hf-hybrid` commands, a module each (`finetune` beside `train`, `merge-predictions` beside `predict`).

`COMMANDS` names each command's module, runner and one-line description; `hf-hybrid` (`hf_hybrid.cli`) imports a
command's module when the command runs, and these modules import nothing of it. At their top they import only the
standard library and modules that do the same (`hf_hybrid.errors`, `hf_hybrid.loading`); what a command uses is
imported when it runs, so that `hf-hybrid --help` and a command's own `--help` start at once and one paper's `predict`
loads no training code.
"""

from typing import NamedTuple


class Command(NamedTuple):
    module: str  # the module of this package that runs it
    function: str  # its runner, called with the command's arguments
    description: str  # what `hf-hybrid --help` says it does


COMMANDS = {
    "train": Command("train", "run_train", "train a new model on a table of papers (all TrainingArguments flags work)"),
    "finetune": Command("train", "run_finetune", "continue training a saved model (folder or Hub repo) on new papers"),
    "evaluate": Command("evaluate", "run_evaluate", "print a model's metrics on a table of labelled papers, as JSON"),
    "predict": Command(
        "predict", "run_predict", "classify one paper (--title/--abstract) or a file of them (--input_file)"
    ),
    "merge-predictions": Command(
        "predict", "run_merge_predictions", "merge the outputs of predict --num_shards into the output of one run"
    ),
    "push": Command("push", "run_push", "upload a trained model folder to the Hugging Face Hub"),
    "serve": Command(
        "serve", "run_serve", "serve a model over HTTP (the Inference Endpoints contract, batched), or on Ray Serve"
    ),
    "export": Command("export", "run_export", "write an ONNX model (optionally int8-quantized) that ONNX Runtime runs"),
    "demo": Command(
        "demo", "run_demo", "open a model in a Gradio web page, or write a Hub Space for it (--write_space)"
    ),
}


def description(name: str) -> str:
    return COMMANDS[name].description
