"""A Gradio page for a trained model, and the Hub Space that serves it.

`build_demo(classify)` makes the page from an `arxiv-classification` pipeline: a title box and an
abstract box (example papers one click away) and, on submit, the predicted category with every class
score (calibrated probabilities), how much the title and the abstract weigh in the decision (the fusion weights),
and each word of both fields highlighted by the attention the model paid to it; below a review threshold the
user sets, no label is given and the page says the paper needs a person's review.

`write_space(folder, repo_id, revision)` writes a ready Hub Space for a pushed model. Its `app.py`
loads the model by repo id, pinned to one commit, with `trust_remote_code`, and builds the page with a
copy of this file: this module imports only the standard library, and Gradio and `transformers` when
they are used, so that the Space needs no `hf_hybrid`.

Example (`hf-hybrid demo --model arxiv-hybrid` does the same from the shell):

```python
>>> from transformers import pipeline
>>> from hf_hybrid.demo import build_demo
>>> classify = pipeline("arxiv-classification", model="arxiv-hybrid", trust_remote_code=True)  # doctest: +SKIP
>>> build_demo(classify).launch()  # doctest: +SKIP
```
"""

from __future__ import annotations

import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# A real abstract is under 2,000 characters (arXiv's limit is 1,920); far longer input is a mistake,
# and would only cost time: the model reads at most `max_abstract_length` words of it anyway.
MAX_FIELD_CHARACTERS = 20_000

EXAMPLES = [
    [
        "Attention Is All You Need",
        "The dominant sequence transduction models are based on complex recurrent or convolutional neural "
        "networks with an encoder and a decoder. We propose a new simple network architecture, the "
        "Transformer, based solely on attention mechanisms, dispensing with recurrence and convolutions "
        "entirely. Experiments on two machine translation tasks show these models to be superior in quality "
        "while being more parallelizable and requiring significantly less time to train.",
    ],
    [
        "Deep Residual Learning for Image Recognition",
        "Deeper neural networks are more difficult to train. We present a residual learning framework to ease "
        "the training of networks that are substantially deeper than those used previously. We reformulate "
        "the layers as learning residual functions with reference to the layer inputs. On the ImageNet "
        "dataset we evaluate residual nets with a depth of up to 152 layers, and an ensemble of them wins "
        "the ILSVRC 2015 classification task.",
    ],
    [
        "Mastering the Game of Go without Human Knowledge",
        "A long-standing goal of artificial intelligence is an algorithm that learns, tabula rasa, superhuman "
        "proficiency in challenging domains. We introduce an algorithm based solely on reinforcement "
        "learning, without human data or guidance beyond the game rules. A neural network is trained to "
        "predict the moves and the winner of games it plays against itself, and the tree search it guides "
        "becomes stronger with every iteration.",
    ],
]

SPACE_APP = '''\
"""The Space's entry point: {repo_id} at commit {revision}, shown by `arxiv_demo.build_demo`."""

from transformers import pipeline

from arxiv_demo import build_demo

MODEL_ID = "{repo_id}"
REVISION = "{revision}"  # the commit this Space was written for: the remote code that runs is the code reviewed

classify = pipeline("arxiv-classification", model=MODEL_ID, revision=REVISION, trust_remote_code=True)
demo = build_demo(classify)

if __name__ == "__main__":
    demo.launch()
'''

SPACE_README = """\
---
title: {title}
emoji: 📄
colorFrom: blue
colorTo: indigo
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
models:
  - {repo_id}
pinned: false
---

# {title}

Sorts a paper into one of the arXiv categories of [{repo_id}](https://huggingface.co/{repo_id})
({labels}) from its title and abstract, and shows what the model looked at: every class score, how
much the title and the abstract weigh in the decision, and each word highlighted by its attention.

The model is loaded at commit `{revision}` with `trust_remote_code=True`: its code is the code of that
commit. `app.py` is the entry point; `arxiv_demo.py` builds the page.
"""


class PaperError(ValueError):
    """Input the page cannot classify; its message is shown on the page."""


def check_paper(title: str | None, abstract: str | None) -> tuple[str, str]:
    """The title and abstract stripped, or a `PaperError` saying what is wrong with them."""
    title, abstract = (title or "").strip(), (abstract or "").strip()
    if not title and not abstract:
        raise PaperError("Give a title, an abstract, or both.")
    for name, text in (("title", title), ("abstract", abstract)):
        if len(text) > MAX_FIELD_CHARACTERS:
            raise PaperError(
                f"The {name} has {len(text):,} characters; this page takes at most {MAX_FIELD_CHARACTERS:,} "
                "per field (a real abstract has under 2,000)."
            )
    return title, abstract


def explain_paper(classify, title: str | None, abstract: str | None, threshold: float | None = None) -> dict:
    """What the page shows for one paper: `label` (None when its top probability is below `threshold`; a multi-label
    model's `labels` instead: those whose probability reaches `threshold`, or their own thresholds when it is 0),
    `scores` and `fusion_weights` (label -> weight), `title_words` and `abstract_words` (each word in reading
    order with its attention, scaled so that the field's most attended word is 1) and `notes` (what the model
    left out, and whether the paper needs a person's review). Raises `PaperError` on bad input."""
    title, abstract = check_paper(title, abstract)
    tokenizer = classify.tokenizer
    decision = {} if not threshold else {"threshold": threshold}
    result = classify(
        {"title": title, "abstract": abstract},
        top_words=max(tokenizer.max_title_length, tokenizer.max_abstract_length),
        **decision,
    )
    notes = []
    if "labels" in result:  # a multi-label model: every label at or above its threshold
        rule = f"a probability of {threshold:.2f} or more" if threshold else "a probability at its threshold or above"
        notes.append(f"Labels: {', '.join(result['labels'])} (each with {rule}).")
        if result["needs_review"]:
            notes.append(
                "No label reached its threshold, so the paper gets its most probable one; it needs a person's review."
            )
    elif result.get("needs_review"):
        notes.append(
            f"Below the threshold: the top probability, {result['score']:.2f}, is under {threshold:.2f}, "
            "so no label is given; this paper needs a person's review."
        )
    read = tokenizer.read_fields(title, abstract)
    if read != (title, abstract):
        notes.append(
            "With no abstract, the title is read as a text given alone: its first sentence as the title and all of "
            "it as the abstract."
        )
    for field, text in zip(("title", "abstract"), read):
        limit = getattr(tokenizer, f"max_{field}_length")
        total = len(tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids)
        if total > limit:
            notes.append(f"The {field} has {total} words; the model reads the first {limit}, as it was trained to.")
    return {
        **({"labels": result["labels"]} if "labels" in result else {"label": result["label"]}),
        "scores": result["scores"],
        "fusion_weights": result["fusion_weights"],
        "title_words": _in_reading_order(result["title_words"]),
        "abstract_words": _in_reading_order(result["abstract_words"]),
        "notes": notes,
    }


def _in_reading_order(words: list[dict]) -> list[tuple[str, float]]:
    highest = max((item["attention"] for item in words), default=0.0) or 1.0
    ordered = sorted(words, key=lambda item: item["position"])
    return [(item["word"], round(item["attention"] / highest, 3)) for item in ordered]


def _highlighted(words: list[tuple[str, float]]) -> list[tuple[str, float | None]]:
    """Words for `gr.HighlightedText`, with unhighlighted spaces between them."""
    spans = []
    for word, weight in words:
        spans += [(word, weight), (" ", None)]
    return spans[:-1]


def require_gradio():
    """The `gradio` module, or an `ImportError` that says in one line how to install it."""
    try:
        import gradio
    except ImportError:
        raise ImportError("the demo needs Gradio: pip install 'hf-hybrid[demo]' (or: pip install gradio)") from None
    return gradio


def build_demo(classify):
    """The Gradio page (a `gr.Blocks`) for `classify`, an `arxiv-classification` pipeline."""
    gr = require_gradio()
    labels = list(classify.model.config.id2label.values())

    def submit(title, abstract, threshold):
        try:
            shown = explain_paper(classify, title, abstract, threshold)
        except PaperError as error:
            return None, None, None, None, f"**{error}**"
        notes = "\n".join(f"- {note}" for note in shown["notes"])
        return (
            shown["scores"],
            shown["fusion_weights"],
            _highlighted(shown["title_words"]),
            _highlighted(shown["abstract_words"]),
            notes,
        )

    with gr.Blocks(title="arXiv paper classifier") as demo:
        gr.Markdown(
            f"# arXiv paper classifier\nA hybrid CNN-LSTM model sorts a paper into {', '.join(labels)} from its "
            "title and abstract, and shows the words it attended to."
        )
        with gr.Row():
            with gr.Column():
                title = gr.Textbox(label="Title", lines=1, max_lines=3, elem_id="title")
                abstract = gr.Textbox(label="Abstract", lines=8, elem_id="abstract")
                threshold = gr.Slider(
                    0,
                    1,
                    value=0,
                    step=0.05,
                    elem_id="threshold",
                    label="Review threshold: below this top probability, no label is given",
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                gr.Examples(EXAMPLES, inputs=[title, abstract], label="Example papers")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                scores = gr.Label(label="Category", num_top_classes=len(labels), elem_id="scores")
                fusion = gr.Label(label="Title vs abstract (fusion weights)", show_heading=False, elem_id="fusion")
        highlighting = dict(show_legend=False, show_inline_category=False, combine_adjacent=False)
        title_words = gr.HighlightedText(label="Title: attention per word", elem_id="title_words", **highlighting)
        abstract_words = gr.HighlightedText(
            label="Abstract: attention per word", elem_id="abstract_words", **highlighting
        )
        outputs = [scores, fusion, title_words, abstract_words, message]
        button.click(submit, inputs=[title, abstract, threshold], outputs=outputs)
        abstract.submit(submit, inputs=[title, abstract, threshold], outputs=outputs)
    return demo


SPACE_FILES = ("README.md", "app.py", "arxiv_demo.py", "requirements.txt")


def check_space_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Raises `FileExistsError` when `folder` holds files that writing a Space would replace (unless `overwrite`),
    or is not a folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a folder: give a new or empty folder for the Space")
    present = [name for name in SPACE_FILES if (folder / name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{folder} holds files a Space would overwrite ({', '.join(present)}): give a new or "
            "empty folder, or --overwrite to replace them"
        )


def write_space(folder: str | Path, repo_id: str, revision: str, labels: list[str], overwrite: bool = False) -> Path:
    """Writes a Hub Space for the model `repo_id` at commit `revision` into `folder`: `app.py`,
    `arxiv_demo.py` (this file), `requirements.txt` and `README.md` with the Space's metadata. Files of those
    names already there are an error (`FileExistsError`), unless `overwrite`."""
    folder = Path(folder)
    check_space_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    values = dict(
        repo_id=repo_id,
        revision=revision,
        gradio_version=_version("gradio"),
        labels=", ".join(labels),
        title=f"{repo_id.split('/')[-1]} demo",
    )
    (folder / "app.py").write_text(SPACE_APP.format(**values))
    (folder / "README.md").write_text(SPACE_README.format(**values))
    shutil.copyfile(__file__, folder / "arxiv_demo.py")
    requirements = [
        f"gradio=={values['gradio_version']}",
        f"transformers=={_version('transformers')}",
        f"tokenizers=={_version('tokenizers')}",
        f"torch>={_version('torch').split('+')[0]}",
    ]
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return folder


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        raise ImportError(f"writing a Space needs {package}: pip install 'hf-hybrid[demo]'") from None
