"""hf-hybrid: a hybrid CNN-LSTM classifier of scientific papers (title + abstract) for the Hugging Face ecosystem.

Every public name is imported on first use, so `import hf_hybrid` (and `hf-hybrid --help`) loads neither torch
nor transformers; the first model name used imports the model package, which registers the classes with the Auto
factories and the `arxiv-classification` pipeline task (`import hf_hybrid.model` does it explicitly). What the
`hf-hybrid` commands run:

- train: `train_model(ModelArguments(...), DataArguments(...), HybridTrainingArguments(...))`;
- finetune: `finetune_model(FinetuneArguments(...), DataArguments(...), HybridTrainingArguments(...))`;
- evaluate: `predict_logits` then `evaluation_report`;
- predict: `ArxivClassificationPipeline` (a file of papers: `hf_hybrid.bulk.classify_file`);
- push: `push_model_folder`; export: `export_onnx`.

Every command that runs a trained model loads it with `hf_hybrid.loading.load_trained`; the commands themselves are
modules of `hf_hybrid.commands`, which `hf_hybrid.cli` runs.
"""

import importlib

__version__ = "0.1.0"

# Public names: name -> the module that defines it, imported when the name is first used.
LAZY_EXPORTS = {
    "PIPELINE_TASK": "model",
    "ArxivClassificationPipeline": "model",
    "HybridCNNLSTMConfig": "model",
    "HybridCNNLSTMForSequenceClassification": "model",
    "HybridCNNLSTMModel": "model",
    "HybridCNNLSTMModelOutput": "model",
    "HybridCNNLSTMPreTrainedModel": "model",
    "HybridCNNLSTMSequenceClassifierOutput": "model",
    "HybridCNNLSTMTokenizer": "model",
    "train_model": "training",
    "finetune_model": "training",
    "ModelArguments": "training_args",
    "DataArguments": "training_args",
    "FinetuneArguments": "training_args",
    "HybridTrainingArguments": "training_args",
    "predict_logits": "evaluation",
    "evaluation_report": "evaluation",
    "push_model_folder": "hub",
    "export_onnx": "export",
}

__all__ = list(LAZY_EXPORTS)


def __getattr__(name: str):
    if name in LAZY_EXPORTS:
        return getattr(importlib.import_module(f".{LAZY_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_EXPORTS})
