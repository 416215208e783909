"""Shared fixtures of the test suite.

Keep each group of fixtures in its own section; nothing here may change the environment at import time.
"""

from __future__ import annotations

import pytest
import torch

from hf_hybrid import (
    ArxivClassificationPipeline,
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMTokenizer,
)

# ---------------------------------------------------------------------------------------------------
# Tiny models of the core: a word tokenizer trained on a dozen sentences, a config a few kB big, and a
# saved model folder (model + tokenizer + the shipped remote code) written by the pipeline.
# ---------------------------------------------------------------------------------------------------

TINY_TITLES = [
    "Deep convolutional networks for image recognition",
    "Attention is all you need",
    "Language models are few-shot learners",
    "Quantum error-correction with neural decoders",
    "Graph neural networks for molecule property prediction",
    "Solving the Schrödinger equation with deep networks",
]
TINY_ABSTRACTS = [
    "We train deep convolutional networks on 1000 image classes and reach state-of-the-art accuracy.",
    "We propose a new network architecture based solely on attention for language translation.",
    "Scaling language models to 175 billion parameters improves few-shot performance on many tasks.",
    "Neural decoders learn quantum error-correction codes and beat classical decoders on noisy qubits.",
    "Message passing neural networks predict molecule properties from graph structure.",
    "A deep neural network solves the electronic Schrödinger equation for small molecules.",
]
TINY_LABELS = {0: "cs.AI", 1: "cs.CL", 2: "cs.CV"}
TINY_MAX_TITLE_LENGTH = 8
TINY_MAX_ABSTRACT_LENGTH = 16


@pytest.fixture(scope="session")
def tiny_corpus() -> list[str]:
    """A dozen made-up paper titles and abstracts (titles first)."""
    return TINY_TITLES + TINY_ABSTRACTS


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus) -> HybridCNNLSTMTokenizer:
    """Every word of `tiny_corpus`; titles keep 8 words, abstracts 16. Shared: do not mutate."""
    return HybridCNNLSTMTokenizer.train_from_iterator(
        tiny_corpus,
        min_frequency=1,
        max_title_length=TINY_MAX_TITLE_LENGTH,
        max_abstract_length=TINY_MAX_ABSTRACT_LENGTH,
    )


@pytest.fixture(scope="session")
def make_tiny_config(tiny_tokenizer):
    """`make_tiny_config(**overrides)`: a fresh tiny config matching `tiny_tokenizer`: the notebook's model (no wide
    branch) unless `wide_branch=True` is given."""

    def make(**overrides) -> HybridCNNLSTMConfig:
        values = dict(
            vocab_size=len(tiny_tokenizer),
            embed_dim=16,
            num_filters=8,
            kernel_sizes=[3, 4, 5],
            lstm_hidden=8,
            classifier_hidden_sizes=[16, 8],
            id2label=dict(TINY_LABELS),
            max_title_length=TINY_MAX_TITLE_LENGTH,
            max_abstract_length=TINY_MAX_ABSTRACT_LENGTH,
            wide_branch=False,
        )
        values.update(overrides)
        return HybridCNNLSTMConfig(**values)

    return make


@pytest.fixture
def tiny_config(make_tiny_config) -> HybridCNNLSTMConfig:
    return make_tiny_config()


@pytest.fixture
def tiny_model(tiny_config) -> HybridCNNLSTMForSequenceClassification:
    """A freshly initialised tiny classifier (seed 0) in eval mode."""
    torch.manual_seed(0)
    return HybridCNNLSTMForSequenceClassification(tiny_config).eval()


SAVED_TEMPERATURE = 1.7


@pytest.fixture(scope="session")
def saved_model(make_tiny_config) -> HybridCNNLSTMForSequenceClassification:
    """The model saved in `saved_model_dir`, in eval mode. Shared: do not mutate.

    Its BatchNorm statistics and affine parameters are made non-trivial, as after training, so that
    tests comparing a reloaded model with this one notice any state that is not saved or restored; and it is
    calibrated (`SAVED_TEMPERATURE`), so that every consumer of the folder is checked to apply the temperature.
    """
    torch.manual_seed(0)
    config = make_tiny_config(calibration_temperature=SAVED_TEMPERATURE)
    return with_trained_batch_norms(HybridCNNLSTMForSequenceClassification(config)).eval()


def with_trained_batch_norms(model):
    """`model` with non-trivial BatchNorm statistics and affine parameters, as after training (random)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.num_batches_tracked.fill_(100)
    return model


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory, saved_model, tiny_tokenizer):
    """A folder written by `ArxivClassificationPipeline(...).save_pretrained`: weights, config, tokenizer
    and the model's remote code."""
    path = tmp_path_factory.mktemp("saved_model")
    ArxivClassificationPipeline(model=saved_model, tokenizer=tiny_tokenizer).save_pretrained(str(path))
    return path
