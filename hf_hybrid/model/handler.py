"""The Hugging Face Inference Endpoints handler of the model: `EndpointHandler`.

An Inference Endpoint runs a repo's `handler.py` for a custom model: the Inference Toolkit imports this file from the
model folder, builds `EndpointHandler(model_dir)` once, and calls it with each request's JSON body,
`{"inputs": ..., "parameters": {...}}`; an exception becomes a 400 answer with `{"error": message}`. `hf-hybrid serve`
and its Ray Serve deployment answer the same requests with the same results.

`inputs` is one paper or a list of them; a paper is `{"title": ..., "abstract": ...}` (either may be left out), or one
text, read whole as the pipelines read a text given alone (its first sentence, up to the first line break or end
mark, as the title, and all of it as the abstract). `parameters` are the `arxiv-classification`
pipeline's: `top_k`, `threshold`, `top_words` and, for a multi-label model, `allow_empty`. One paper gives one result
(the pipeline's dict), a list gives a list.

This file is shipped with every saved model, beside the model's code, and is imported on its own (not as part of a
package): it imports only the standard library, ``torch`` and ``transformers``, and loads the model and pipeline
files beside it through ``trust_remote_code``.

Example:

```python
>>> from handler import EndpointHandler  # doctest: +SKIP
>>> classify = EndpointHandler("path/to/model")  # doctest: +SKIP
>>> paper = {"title": "Attention is all you need", "abstract": "The dominant sequence transduction models ..."}
>>> classify({"inputs": paper, "parameters": {"top_k": 2}})  # doctest: +SKIP
{'label': 'cs.CL', 'score': 0.93, 'scores': {...}, 'top_labels': [...], ...}
```
"""

import os

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.dynamic_module_utils import get_class_from_dynamic_module

PAPER_FIELDS = ("title", "abstract")
REQUEST_FIELDS = ("inputs", "parameters")
PARAMETERS = ("top_k", "threshold", "top_words", "allow_empty")
# Where a deployment that cannot pass arguments (an Inference Endpoint) names the device: cpu, cuda, cuda:N, auto.
DEVICE_VARIABLE = "HF_HYBRID_DEVICE"
JSON_TYPES = {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null"}


class EndpointHandler:
    """Classifies the papers of Inference Endpoints requests with the model of the folder `path`.

    `device` is `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when there is a GPU), by default the `HF_HYBRID_DEVICE`
    environment variable's or `auto`. On CPU the model runs its folded fast path (`fold_for_inference()`, the same
    results); on a GPU it runs as trained, in float32.
    """

    def __init__(self, path: str = "", device: str | None = None):
        path = str(path) if path else "."
        self.device = select_device(device or os.environ.get(DEVICE_VARIABLE) or "auto")
        pipeline_class = get_class_from_dynamic_module(
            "pipeline_arxiv_classification.ArxivClassificationPipeline", path
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
        fold = {"fold_for_inference": True} if self.device.type == "cpu" else {}
        self.pipeline = pipeline_class(model=model, tokenizer=tokenizer, device=self.device, **fold)

    def __call__(self, data: dict) -> dict | list[dict]:
        papers, single, options = read_request(data)
        results = [self.pipeline(paper, **options) for paper in papers]
        return results[0] if single else results


def read_request(data) -> tuple[list[dict], bool, dict]:
    """A request body's papers (`{"title", "abstract"}` dicts), whether `inputs` was one paper rather than a list,
    and its pipeline options; a `ValueError` says in one line what is wrong with the body."""
    if not isinstance(data, dict):
        raise ValueError(f'the body must be a JSON object {{"inputs": ..., "parameters": ...}}, not {_kind(data)}')
    unknown = sorted(set(data) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}: the body holds inputs and parameters")
    if "inputs" not in data:
        raise ValueError("the body has no inputs: give one paper or a list of papers")
    inputs = data["inputs"]
    if isinstance(inputs, list):
        if not inputs:
            raise ValueError("inputs is an empty list: give at least one paper")
        papers = [_paper(item, f"inputs[{i}]") for i, item in enumerate(inputs)]
    else:
        papers = [_paper(inputs, "inputs")]
    parameters = data.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters must be an object, not {_kind(parameters)}")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: the parameters are {', '.join(PARAMETERS)}")
    options = {name: value for name, value in parameters.items() if value is not None}
    return papers, not isinstance(inputs, list), options


def _paper(item, where: str) -> dict:
    if isinstance(item, str):  # a text given alone: the title's place, which the tokenizer reads whole
        return {"title": item, "abstract": ""}
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a paper ({{'title', 'abstract'}} or a text), not {_kind(item)}")
    unknown = sorted(set(item) - set(PAPER_FIELDS))
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)}: a paper has a title and an abstract")
    if not item:
        raise ValueError(f"{where} is an empty object: give its title, its abstract or both")
    for field in PAPER_FIELDS:
        if not isinstance(item.get(field, ""), str | None):
            raise ValueError(f"{where}.{field} must be text, not {_kind(item[field])}")
    return {field: item.get(field) or "" for field in PAPER_FIELDS}


def _kind(value) -> str:
    return JSON_TYPES.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def select_device(name: str) -> torch.device:
    """The `torch.device` that `name` (`cpu`, `cuda`, `cuda:N` or `auto`: CUDA when available) names here; a
    `ValueError` when it names none, or a GPU this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index is not None):
        raise ValueError(f"device {name!r}: give cpu, cuda, cuda:N (a GPU's index) or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA GPU is available here (torch {torch.__version__})")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device
