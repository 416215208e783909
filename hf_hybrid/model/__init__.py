"""The files of this folder are what every saved model ships for `trust_remote_code`.

They import only `torch`, `transformers`, its dependencies `tokenizers` and `safetensors`, a few standard
library modules and each other. Importing this package also registers the classes with the Auto* factories and
the `arxiv-classification` pipeline task: in a process that imports `hf_hybrid.model` (as the first use of any
model name of `hf_hybrid` does), saved models and tokenizers load with the Auto classes without remote code, and
every save records the code to ship. (A saved folder's `arxiv-classification` pipeline still needs
`trust_remote_code=True`, or `pipeline_class=ArxivClassificationPipeline`.)
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_hybrid_cnn_lstm import MODEL_TYPE, HybridCNNLSTMConfig
from .modeling_hybrid_cnn_lstm import (
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMModel,
    HybridCNNLSTMModelOutput,
    HybridCNNLSTMPreTrainedModel,
    HybridCNNLSTMSequenceClassifierOutput,
)
from .pipeline_arxiv_classification import PIPELINE_TASK, ArxivClassificationPipeline
from .tokenization_hybrid_cnn_lstm import HybridCNNLSTMTokenizer

# The Inference Endpoints handler, which the pipeline's `save_pretrained` writes itself: nothing imports it.
HANDLER_FILE = "handler.py"
# The code a saved model ships: `save_pretrained` copies these from the registered classes' modules and their
# relative imports (the folding file's too, imported lazily), and loading with remote code fetches them all; and
# the handler.
CODE_FILES = [
    "configuration_hybrid_cnn_lstm.py",
    "modeling_hybrid_cnn_lstm.py",
    "layers_hybrid_cnn_lstm.py",
    "loading_hybrid_cnn_lstm.py",
    "folding_hybrid_cnn_lstm.py",
    "tokenization_hybrid_cnn_lstm.py",
    "pipeline_arxiv_classification.py",
    HANDLER_FILE,
]

AutoConfig.register(MODEL_TYPE, HybridCNNLSTMConfig, exist_ok=True)
AutoModel.register(HybridCNNLSTMConfig, HybridCNNLSTMModel, exist_ok=True)
AutoModelForSequenceClassification.register(HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, exist_ok=True)
AutoTokenizer.register(HybridCNNLSTMConfig, fast_tokenizer_class=HybridCNNLSTMTokenizer, exist_ok=True)

HybridCNNLSTMConfig.register_for_auto_class()
HybridCNNLSTMModel.register_for_auto_class("AutoModel")
HybridCNNLSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
HybridCNNLSTMTokenizer.register_for_auto_class("AutoTokenizer")
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=ArxivClassificationPipeline,
    pt_model=AutoModelForSequenceClassification,
    type="text",
)

__all__ = [
    "CODE_FILES",
    "HANDLER_FILE",
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
