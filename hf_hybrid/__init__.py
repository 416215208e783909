"""hf-hybrid: a hybrid CNN-LSTM classifier of scientific papers (title + abstract) for the Hugging Face ecosystem.

The model, its tokenizer and its pipeline are imported with the package; what the `hf-hybrid` commands run is
imported when first used (training imports the `Trainer`, export ONNX):

- train: `train_model(ModelArguments(...), DataArguments(...), HybridTrainingArguments(...))`;
- finetune: `finetune_model(FinetuneArguments(...), DataArguments(...), HybridTrainingArguments(...))`;
- evaluate: `predict_logits` then `evaluation_report`;
- predict: `ArxivClassificationPipeline` (a file of papers: `hf_hybrid.bulk.classify_file`);
- push: `push_model_folder`; export: `export_onnx`.
"""

import importlib

from .model import (
    PIPELINE_TASK,
    ArxivClassificationPipeline,
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMModel,
    HybridCNNLSTMModelOutput,
    HybridCNNLSTMPreTrainedModel,
    HybridCNNLSTMSequenceClassifierOutput,
    HybridCNNLSTMTokenizer,
)

__version__ = "0.1.0"

# Public names of the modules imported on first use: name -> module.
LAZY_EXPORTS = {
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

__all__ = [
    "PIPELINE_TASK",
    "ArxivClassificationPipeline",
    "HybridCNNLSTMConfig",
    "HybridCNNLSTMForSequenceClassification",
    "HybridCNNLSTMModel",
    "HybridCNNLSTMModelOutput",
    "HybridCNNLSTMPreTrainedModel",
    "HybridCNNLSTMSequenceClassifierOutput",
    "HybridCNNLSTMTokenizer",
    *LAZY_EXPORTS,
]


def __getattr__(name: str):
    if name in LAZY_EXPORTS:
        return getattr(importlib.import_module(f".{LAZY_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
