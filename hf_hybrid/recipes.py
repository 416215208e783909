"""The training recipes, as data: every option a recipe sets, with each recipe's value.

A recipe option left unset (None) takes the value of the `--recipe` named, whether the arguments come from the
command line or are built in Python; a value given explicitly wins. `HybridTrainingArguments` fills its own
options when it is built, `ModelArguments.for_recipe` the model's (`train_model` calls it).

- `default`: hf-hybrid's: AdamW (decoupled weight decay, none on the embedding, biases and norms), a linear
  warm-up then linear decay, word2vec vectors of the training split as the starting embedding, and the wide
  branch, which lifted test accuracy by 1.5 points in two seeds (README, Accuracy).
- `notebook`: the research notebook's: Adam with L2 weight decay on every parameter, the learning rate halved
  after 3 epochs without a better validation accuracy, up to 20 epochs with early stopping after 5, a random
  N(0, 1) embedding, and no wide branch.

`MULTI_LABEL_CHANGES` holds the few values a recipe sets otherwise for a multi-label model: the default recipe
trains one more epoch, as its multi-label runs still gained in their third (docs/benchmarks.md).
"""

import dataclasses

from .model import HybridCNNLSTMConfig
from .word_vectors import RANDOM, WORD2VEC

DEFAULT_RECIPE = "default"
NOTEBOOK_RECIPE = "notebook"

RECIPES = {
    DEFAULT_RECIPE: {
        "init_embeddings": WORD2VEC,
        "wide_branch": HybridCNNLSTMConfig.wide_branch,
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "lr_scheduler_type": "linear",
        "lr_scheduler_kwargs": {},
        "warmup_steps": 0.05,
        "num_train_epochs": 2.0,
        "min_train_steps": 800,
        "max_train_epochs": 20.0,
        "early_stopping_patience": 2,
    },
    NOTEBOOK_RECIPE: {
        "init_embeddings": RANDOM,
        "wide_branch": False,
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "lr_scheduler_type": "reduce_lr_on_plateau",
        "lr_scheduler_kwargs": {"mode": "max", "factor": 0.5, "patience": 3},
        "warmup_steps": 0,
        "num_train_epochs": 20.0,
        "min_train_steps": 0,
        "max_train_epochs": 20.0,
        "early_stopping_patience": 5,
    },
}


MULTI_LABEL_CHANGES = {DEFAULT_RECIPE: {"num_train_epochs": 3.0}, NOTEBOOK_RECIPE: {}}


def recipe_default(name: str, help_text: str, **parser_options) -> dict:
    """The `dataclasses.field` keywords of recipe option `name`: None (the recipe's value) by default, and a help
    that ends with each recipe's value; `parser_options` go to `argparse` (through `HfArgumentParser`)."""
    values = "; ".join(
        f"{recipe}: {values[name]}"
        + (f", multi-label {MULTI_LABEL_CHANGES[recipe][name]}" if name in MULTI_LABEL_CHANGES[recipe] else "")
        for recipe, values in RECIPES.items()
    )
    return {"default": None, "metadata": {"help": f"{help_text} Default: the --recipe's ({values}).", **parser_options}}


def fill_from_recipe(arguments, recipe: str) -> frozenset[str]:
    """Sets each option of `arguments` (a dataclass) that `recipe` sets and that was left None to the recipe's
    value (a fresh copy of it); returns the names of the options it set."""
    values = RECIPES[recipe]
    filled = set()
    for field in dataclasses.fields(arguments):
        if field.name in values and getattr(arguments, field.name) is None:
            value = values[field.name]
            setattr(arguments, field.name, dict(value) if isinstance(value, dict) else value)
            filled.add(field.name)
    return frozenset(filled)
