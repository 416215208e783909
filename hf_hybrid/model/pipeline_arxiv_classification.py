"""The `arxiv-classification` pipeline: a paper's label, every class score, and what the model looked at.

It returns, as data, what the research notebook plotted: how much the title and the abstract weigh
in the decision (the fusion weights) and the most-attended words of each.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only
``torch``, ``transformers`` and its sibling configuration file.
"""

import os
from pathlib import Path

import torch
from transformers import Pipeline

from .configuration_hybrid_cnn_lstm import python_number

PIPELINE_TASK = "arxiv-classification"
# What a saved config.json declares, so that `pipeline(model=folder, trust_remote_code=True)` finds this file.
CUSTOM_PIPELINE = {
    "impl": "pipeline_arxiv_classification.ArxivClassificationPipeline",
    "pt": ["AutoModelForSequenceClassification"],
    "type": "text",
}


class ArxivClassificationPipeline(Pipeline):
    r"""Classifies papers given as `{"title": ..., "abstract": ...}`, as a text alone (a string, or `{"text": ...}`,
    with `"text_pair"` for the abstract, as the `text-classification` pipeline takes them), or a list of these. A text
    alone, like a title without an abstract, is read whole: its first sentence as the title and all of it as the
    abstract (the tokenizer's `read_fields`), in both pipelines alike.

    Each result holds `label`, `score`, `scores` (every label's probability), `fusion_weights`
    (`{"title": w, "abstract": 1 - w}`), and `title_words` / `abstract_words`: the `top_words` most
    attended words of each field, with their attention weights and their position in the field (a word
    index: `top_words` as large as the field's maximum length gives them all, to put back in order). A model
    with a wide branch (`config.wide_branch`) adds `branch_scores`: the predicted label's probability by the
    deep part alone and by the bag of words alone (the model predicts with the product of the two).
    The probabilities are the model's calibrated ones (`config.calibration_temperature`).
    `top_k=K` adds `top_labels`: the K most probable labels with their probabilities, best first.
    `threshold=T` abstains below it: a paper whose top probability is below `T` gets `label` None and
    `needs_review` True (its `score` and `scores` are still given); every other paper `needs_review` False.
    A multi-label model (`config.problem_type == "multi_label_classification"`) gives `labels` instead of `label`
    and `score`: every label whose probability (its own sigmoid, in `scores`) reaches its threshold
    (`config.label_thresholds`, or `threshold=T` for every label), most probable first, and `needs_review`: True
    when no label reached its threshold; such a paper gets its most probable label, or none with `allow_empty=True`.
    `fold_for_inference=True` (or a dtype, `"bfloat16"`) runs the model's `fold_for_inference()` fast path:
    the same results, several times faster on CPU.

    Example (with a model folder saved by hf-hybrid):

    ```python
    >>> from transformers import pipeline
    >>> classify = pipeline("arxiv-classification", model="path/to/model", trust_remote_code=True)  # doctest: +SKIP
    >>> classify({"title": "Attention is all you need", "abstract": "We propose the Transformer ..."})  # doctest: +SKIP
    {'label': 'cs.CL', 'score': 0.93, 'scores': {...}, 'fusion_weights': {'title': 0.41, 'abstract': 0.59}, ...}
    ```
    """

    # A tokenizer that fails to load is an error, not a pipeline without one.
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokenizer.check_fits(self.model.config)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`Pipeline.save_pretrained` (the model, its tokenizer and the code of both), which also writes the Inference
        Endpoints handler (`handler.py`) when the code it runs from has one: nothing imports the handler, so the copy
        of the classes' own files leaves it out."""
        handler = Path(__file__).with_name("handler.py")
        if handler.is_file() and not os.path.isfile(save_directory):
            os.makedirs(save_directory, exist_ok=True)
            Path(save_directory, handler.name).write_bytes(handler.read_bytes())
        super().save_pretrained(save_directory, *args, **kwargs)

    def _sanitize_parameters(
        self, top_words=None, fold_for_inference=None, top_k=None, threshold=None, allow_empty=None, **kwargs
    ):
        # NumPy and PyTorch scalars are read as the Python numbers they hold: results hold plain Python values.
        top_words, top_k, threshold, allow_empty = map(python_number, (top_words, top_k, threshold, allow_empty))
        check_options(self.model.config, top_words, top_k, threshold, allow_empty)
        if fold_for_inference:
            # The model's fast CPU path; True means float32 tables, or name the dtype ("bfloat16").
            self.model.fold_for_inference(torch.float32 if fold_for_inference is True else fold_for_inference)
        postprocess = {
            name: value
            for name, value in (
                ("top_words", top_words),
                ("top_k", top_k),
                ("threshold", threshold),
                ("allow_empty", allow_empty),
            )
            if value is not None
        }
        return {}, {}, postprocess

    def get_inference_context(self):
        # Inference mode, not the base class's no_grad: no version counters or views to track, for a faster call.
        return torch.inference_mode

    def preprocess(self, paper):
        title, abstract = self.tokenizer.read_fields(*_title_and_abstract(paper))
        inputs = self.tokenizer(title, abstract, return_tensors="pt")
        # The texts ride along as strings, split into words only in postprocess: the pipeline walks every list
        # element of what goes in and out of `_forward`, which for word lists was most of one paper's overhead.
        inputs["texts"] = {"title": title, "abstract": abstract}
        return inputs

    def _forward(self, inputs):
        texts = inputs.pop("texts")
        return {**self.model(**inputs, output_attentions=True), "texts": texts}

    def postprocess(self, outputs, top_words=5, top_k=None, threshold=None, allow_empty=False):
        multi_label = self.model.config.is_multi_label
        logits = outputs["logits"][0].float()
        probabilities = logits.sigmoid() if multi_label else logits.softmax(dim=-1)
        fusion_weights = outputs["fusion_weights"][0].float()
        labels = self.model.config.id2label
        best = int(probabilities.argmax())
        if multi_label:
            if threshold is not None:
                thresholds = [threshold] * len(labels)
            else:
                thresholds = self.model.config.label_thresholds or [0.5] * len(labels)
            reached = decide_labels(probabilities[None], thresholds, allow_empty=True)[0]
            decided = decide_labels(probabilities[None], thresholds, allow_empty=allow_empty)[0]
            ranked = torch.argsort(probabilities, descending=True).tolist()
            decision = {"labels": [labels[i] for i in ranked if decided[i]], "needs_review": not reached.any().item()}
        else:
            below_threshold = threshold is not None and probabilities[best].item() < threshold
            decision = {
                "label": None if below_threshold else labels[best],
                "score": probabilities[best].item(),
                **({} if threshold is None else {"needs_review": below_threshold}),
            }
        result = {
            **decision,
            "scores": {labels[i]: p.item() for i, p in enumerate(probabilities)},
            "fusion_weights": {"title": fusion_weights[0].item(), "abstract": fusion_weights[1].item()},
            **{
                f"{field}_words": _most_attended(
                    self.tokenizer.split_words(text, field), outputs[f"{field}_attention"][0], top_words
                )
                for field, text in outputs["texts"].items()
            },
        }
        if top_k is not None:
            ranked = torch.argsort(probabilities, descending=True)[:top_k].tolist()
            result["top_labels"] = [{"label": labels[i], "score": probabilities[i].item()} for i in ranked]
        if outputs.get("wide_logits") is not None:
            wide = outputs["wide_logits"][0].float()
            # The raw scores are the two branches' scores summed; `logits` divides them by the temperature.
            deep = logits * self.model.config.calibration_temperature - wide
            if multi_label:
                result["branch_scores"] = {"deep": deep.sigmoid()[best].item(), "wide": wide.sigmoid()[best].item()}
            else:
                result["branch_scores"] = {"deep": deep.softmax(-1)[best].item(), "wide": wide.softmax(-1)[best].item()}
        return result


def check_options(config, top_words=None, top_k=None, threshold=None, allow_empty=None) -> None:
    """Refuses, with a `ValueError`, an option of the pipeline (None: not given) that means nothing for a model of
    `config`."""
    if top_words is not None and not _is_count(top_words):
        raise ValueError(f"`top_words` must be a whole number of words, 0 or more, got {top_words!r}")
    if top_k is not None and not (_is_count(top_k) and 1 <= top_k <= config.num_labels):
        raise ValueError(f"`top_k` must be a whole number from 1 to {config.num_labels}, got {top_k!r}")
    if threshold is not None and not (
        isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 1
    ):
        raise ValueError(f"`threshold` must be a probability from 0 to 1, got {threshold!r}")
    if allow_empty is not None and not isinstance(allow_empty, bool):
        raise ValueError(f"`allow_empty` must be true or false, got {allow_empty!r}")
    if allow_empty is not None and not config.is_multi_label:
        raise ValueError("`allow_empty` is for multi-label models: a single-label model abstains with `threshold`")


def decide_labels(probabilities, thresholds, allow_empty: bool = False) -> torch.Tensor:
    """A multi-label model's decisions for a batch of papers (rows of label probabilities): every label whose
    probability reaches its threshold and, for a paper with none, its most probable label, unless `allow_empty`."""
    probabilities = torch.as_tensor(probabilities)
    decided = probabilities >= torch.as_tensor(thresholds, dtype=probabilities.dtype)
    if not allow_empty:
        none = ~decided.any(dim=1)
        decided[none, probabilities[none].argmax(dim=1)] = True
    return decided


def _title_and_abstract(paper) -> tuple[str, str]:
    if isinstance(paper, str):
        return paper, ""
    if isinstance(paper, dict) and {"title", "abstract"} & paper.keys():
        return paper.get("title") or "", paper.get("abstract") or ""
    if isinstance(paper, dict) and "text" in paper:
        return paper["text"] or "", paper.get("text_pair") or ""
    raise ValueError(
        'Give each paper as a dict, {"title": ..., "abstract": ...} or {"text": ..., "text_pair": ...}, or as a text'
    )


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _most_attended(words, attention, top_words):
    weights = attention[: len(words)].float()
    order = torch.argsort(weights, descending=True)[:top_words]
    return [{"word": words[i], "attention": weights[i].item(), "position": i} for i in order.tolist()]
