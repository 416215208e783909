"""What `from_pretrained` of the hybrid CNN-LSTM model refuses: weights that do not fit the config, a damaged
weights file, and one that may not be read.

This file is shipped with every saved model and runs under ``trust_remote_code``, on whatever ``transformers``
version the user has: it reads only the loading info that ``from_pretrained(..., output_loading_info=True)``
returns, and recognises a damaged file by the error type of ``safetensors``, which ``transformers`` depends on.
"""

import os

from safetensors import SafetensorError

# The hyperparameters that set the shapes of each part's weights, to name them when saved weights do not fit.
SHAPED_BY = {
    "embedding": ("vocab_size", "embed_dim"),
    "title_encoder": ("embed_dim", "lstm_hidden", "lstm_layers"),
    "abstract_encoder": ("embed_dim", "num_filters", "kernel_sizes"),
    "fusion": ("lstm_hidden", "num_filters", "kernel_sizes"),
    "classifier": ("lstm_hidden", "num_filters", "kernel_sizes", "classifier_hidden_sizes", "id2label"),
    "wide": ("wide_branch", "vocab_size", "wide_bigram_buckets", "id2label"),
}
WEIGHTS_FILE = "model.safetensors"
# Weights that models saved by earlier versions lack, and whose zero start reproduces them exactly.
ADDED_LATER = ("wide.bias",)


def damaged_weights_error(source, error: SafetensorError) -> OSError:
    """The error to raise when `safetensors` could not read the weights of `source`: which file to fetch again."""
    return OSError(
        f"{source}: {WEIGHTS_FILE} is truncated or corrupt ({error}): download it again or re-save the model"
    )


def unreadable_weights_error(error: FileNotFoundError) -> OSError | None:
    """`safetensors` reports a weights file that is there but may not be read as "No such file or directory": the
    error to raise instead, which says why it cannot be read (None when the file is missing indeed)."""
    path = str(error).removeprefix("No such file or directory: ")
    if not os.path.isfile(path):
        return None
    try:
        open(path, "rb").close()
    except OSError as cause:
        return OSError(f"{path}: cannot be read ({cause.strerror}): its owner can make it readable (chmod a+r)")
    return None


def check_loaded_weights(model, source, info: dict, allow_mismatch: bool) -> None:
    """Raises when weights `model` needs were missing from the file or did not fit the config, naming the config
    fields that shape them. `info` is what `from_pretrained(..., output_loading_info=True)` returned;
    `allow_mismatch` lets weights of another shape stand re-initialised (`ignore_mismatched_sizes=True`)."""
    problems = [f"{key} missing" for key in sorted(info["missing_keys"]) if not key.endswith(ADDED_LATER)]
    # A classifier checkpoint's head (and wide branch) is not a problem for the bare encoder; any other extra
    # weights mean that the config leaves out a part that was trained.
    encoder_parts = dict(model.named_children()) if model.base_model is model else None
    problems += [
        f"{key} unexpected"
        for key in sorted(info["unexpected_keys"])
        if encoder_parts is None or key.split(".")[0] in encoder_parts
    ]
    if not allow_mismatch:
        problems += [
            f"{key} is {tuple(saved)} in the file, {tuple(expected)} by the config"
            for key, saved, expected in sorted(info["mismatched_keys"])
        ]
    if not problems:
        return
    parts = {problem.removeprefix(f"{model.base_model_prefix}.").split(".")[0] for problem in problems}
    # The fields that shape every mismatched part are the likely culprits; else any of them.
    shaping = [set(SHAPED_BY.get(part, ())) for part in parts]
    fields = sorted(set.intersection(*shaping) or set.union(*shaping))
    shown = "; ".join(problems[:2]) + (f"; and {len(problems) - 2} more" if len(problems) > 2 else "")
    raise OSError(
        f"{source}: the weights in {WEIGHTS_FILE} do not match config.json ({shown}); "
        f"check {', '.join(fields) or 'the config'} in config.json, or re-save the model"
    )
