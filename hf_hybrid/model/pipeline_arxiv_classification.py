"""The `arxiv-classification` pipeline: a paper's label, every class score, and what the model looked at.

It returns, as data, what the research notebook plotted: how much the title and the abstract weigh
in the decision (the fusion weights) and the most-attended words of each.

This file is shipped with every saved model and runs under ``trust_remote_code``: it imports only
``torch`` and ``transformers``.
"""

import torch
from transformers import Pipeline


class ArxivClassificationPipeline(Pipeline):
    r"""Classifies papers given as `{"title": ..., "abstract": ...}` (one dict or a list of them).

    Each result holds `label`, `score`, `scores` (every label's probability), `fusion_weights`
    (`{"title": w, "abstract": 1 - w}`), and `title_words` / `abstract_words`: the `top_words` most
    attended words of each field, with their attention weights and their position in the field (a word
    index: `top_words` as large as the field's maximum length gives them all, to put back in order). A model
    with a wide branch (`config.wide_branch`) adds `branch_scores`: the predicted label's probability by the
    deep part alone and by the bag of words alone (the model predicts with the product of the two).
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

    def _sanitize_parameters(self, top_words=None, fold_for_inference=None, **kwargs):
        if top_words is not None and (not isinstance(top_words, int) or isinstance(top_words, bool) or top_words < 0):
            raise ValueError(f"`top_words` must be a whole number of words, 0 or more, got {top_words!r}")
        if fold_for_inference:
            # The model's fast CPU path; True means float32 tables, or name the dtype ("bfloat16").
            self.model.fold_for_inference(torch.float32 if fold_for_inference is True else fold_for_inference)
        postprocess = {} if top_words is None else {"top_words": top_words}
        return {}, {}, postprocess

    def preprocess(self, paper):
        if not isinstance(paper, dict) or not ({"title", "abstract"} & paper.keys()):
            raise ValueError('Give each paper as a dict: {"title": ..., "abstract": ...}')
        title, abstract = paper.get("title") or "", paper.get("abstract") or ""
        inputs = self.tokenizer(title, abstract, return_tensors="pt")
        inputs["title_words"] = self.tokenizer.split_words(title, "title")
        inputs["abstract_words"] = self.tokenizer.split_words(abstract, "abstract")
        return inputs

    def _forward(self, inputs):
        words = {key: inputs.pop(key) for key in ("title_words", "abstract_words")}
        return {**self.model(**inputs, output_attentions=True), **words}

    def postprocess(self, outputs, top_words=5):
        probabilities = outputs["logits"][0].float().softmax(dim=-1)
        fusion_weights = outputs["fusion_weights"][0].float()
        labels = self.model.config.id2label
        best = int(probabilities.argmax())
        result = {
            "label": labels[best],
            "score": probabilities[best].item(),
            "scores": {labels[i]: p.item() for i, p in enumerate(probabilities)},
            "fusion_weights": {"title": fusion_weights[0].item(), "abstract": fusion_weights[1].item()},
            "title_words": _most_attended(outputs["title_words"], outputs["title_attention"][0], top_words),
            "abstract_words": _most_attended(outputs["abstract_words"], outputs["abstract_attention"][0], top_words),
        }
        if outputs.get("wide_logits") is not None:
            wide = outputs["wide_logits"][0].float()
            deep = outputs["logits"][0].float() - wide
            result["branch_scores"] = {"deep": deep.softmax(-1)[best].item(), "wide": wide.softmax(-1)[best].item()}
        return result


def _most_attended(words, attention, top_words):
    weights = attention[: len(words)].float()
    order = torch.argsort(weights, descending=True)[:top_words]
    return [{"word": words[i], "attention": weights[i].item(), "position": i} for i in order.tolist()]
