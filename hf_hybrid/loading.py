"""A trained hf-hybrid model and its tokenizer, from a folder or Hub repo, with this package's own classes (no remote
code runs): what every command that uses a model, the bulk workers and the server load it with.

This module imports only the standard library: `transformers` and the model package are imported when a model is
loaded, so that a module may import `load_trained` without loading the ML stack.

Example:

```python
>>> from hf_hybrid.loading import load_trained
>>> tokenizer, model = load_trained("arxiv-hybrid")  # doctest: +SKIP
```
"""

from .errors import UserError


def load_trained(model: str, revision: str | None = None):
    """This package's tokenizer and classifier from a folder or Hub repo: no remote code runs. A folder that is not
    there is refused before anything asks the Hub, and a failed Hub load says why (offline, no such repo, ...)."""
    from transformers.utils import logging as transformers_logging

    from .hub import model_loading
    from .model import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
    from .model.configuration_hybrid_cnn_lstm import MODEL_TYPE

    with model_loading(model, revision):
        model_type = HybridCNNLSTMConfig.get_config_dict(model, revision=revision)[0].get("model_type")
        if model_type != MODEL_TYPE:
            raise UserError(f"{model} is a {model_type!r} model, not an hf-hybrid ({MODEL_TYPE}) one")
        verbosity = transformers_logging.get_verbosity()
        # A sound classifier folder loads without a load report; a refused one's error line says what the report
        # would, which calls the misfit weights re-initialised, as if the load went on.
        transformers_logging.set_verbosity_error()
        try:
            tokenizer = HybridCNNLSTMTokenizer.from_pretrained(model, revision=revision)
            classifier = HybridCNNLSTMForSequenceClassification.from_pretrained(model, revision=revision).eval()
            tokenizer.check_fits(classifier.config)
        except ValueError as error:  # the shipped files' own checks of the folder (they know no hf_hybrid error)
            raise UserError(str(error)) from error
        finally:
            transformers_logging.set_verbosity(verbosity)
    return tokenizer, classifier
