"""`hf-hybrid train` and `hf-hybrid finetune`: one `HfArgumentParser` over the argument dataclasses, shared with
`scripts/train.py` and `scripts/finetune.py`, so that every `TrainingArguments` flag works."""


def run_train(argv: list[str]) -> None:
    from ..training import train_model
    from ..training_args import DataArguments, HybridTrainingArguments, ModelArguments, parse_training_arguments

    model_args, data_args, training_args = parse_training_arguments(
        (ModelArguments, DataArguments, HybridTrainingArguments), argv, prog="hf-hybrid train"
    )
    train_model(model_args, data_args, training_args)


def run_finetune(argv: list[str]) -> None:
    from ..training import finetune_model
    from ..training_args import DataArguments, FinetuneArguments, HybridTrainingArguments, parse_training_arguments

    finetune_args, data_args, training_args = parse_training_arguments(
        (FinetuneArguments, DataArguments, HybridTrainingArguments), argv, prog="hf-hybrid finetune"
    )
    finetune_model(finetune_args, data_args, training_args)
