"""hf-hybrid: a hybrid CNN-LSTM classifier of scientific papers (title + abstract) for the Hugging Face ecosystem."""

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
]
