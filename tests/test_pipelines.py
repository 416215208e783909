"""The stock text-classification pipeline and the custom arxiv-classification pipeline on a saved folder."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from hf_hybrid import ArxivClassificationPipeline, HybridCNNLSTMForSequenceClassification

LABELS = ["cs.AI", "cs.CL", "cs.CV"]
PAPERS = [
    {
        "title": "Attention is all you need",
        "abstract": "We propose a new network architecture based solely on attention for language translation.",
    },
    {
        "title": "Deep convolutional networks for zebra recognition",
        "abstract": "We train deep convolutional networks on 1000 image classes.",
    },
]


def probabilities(model, tokenizer, paper):
    """Softmax over the model's logits for one paper, computed without any pipeline."""
    inputs = tokenizer(paper["title"], paper["abstract"], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0].softmax(dim=-1)


def attentions(model, tokenizer, paper):
    """(title attention, abstract attention, fusion weights) of the model for one paper, without any pipeline."""
    inputs = tokenizer(paper["title"], paper["abstract"], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, output_attentions=True)
    return output.title_attention, output.abstract_attention, output.fusion_weights


# --- text-classification (stock pipeline) ---


@pytest.fixture(scope="module")
def text_classifier(saved_model_dir):
    return pipeline("text-classification", model=str(saved_model_dir), trust_remote_code=True)


def test_text_classification_gives_the_models_top_label_and_score(text_classifier, saved_model, tiny_tokenizer):
    paper = PAPERS[0]
    result = text_classifier({"text": paper["title"], "text_pair": paper["abstract"]})
    expected = probabilities(saved_model, tiny_tokenizer, paper)
    assert result["label"] == LABELS[int(expected.argmax())]
    assert result["score"] == pytest.approx(expected.max().item(), rel=1e-5)


def test_text_classification_on_a_list_of_pairs(text_classifier, saved_model, tiny_tokenizer):
    results = text_classifier([{"text": p["title"], "text_pair": p["abstract"]} for p in PAPERS], top_k=None)
    assert len(results) == len(PAPERS)
    for paper, scores in zip(PAPERS, results):
        expected = probabilities(saved_model, tiny_tokenizer, paper)
        assert {item["label"] for item in scores} == set(LABELS)
        for item in scores:
            assert item["score"] == pytest.approx(expected[LABELS.index(item["label"])].item(), rel=1e-5)


# --- arxiv-classification (custom pipeline) ---


@pytest.fixture(scope="module")
def arxiv_classifier(saved_model_dir):
    return pipeline("arxiv-classification", model=str(saved_model_dir), trust_remote_code=True)


def test_saved_config_declares_the_custom_pipeline(saved_model_dir):
    config = json.loads((saved_model_dir / "config.json").read_text())
    task = config["custom_pipelines"]["arxiv-classification"]
    assert task["impl"] == "pipeline_arxiv_classification.ArxivClassificationPipeline"
    assert task["pt"] == ["AutoModelForSequenceClassification"]
    assert (saved_model_dir / "pipeline_arxiv_classification.py").is_file()


def test_task_is_inferred_from_the_saved_folder(saved_model_dir, arxiv_classifier):
    inferred = pipeline(model=str(saved_model_dir), trust_remote_code=True)
    assert type(inferred).__name__ == "ArxivClassificationPipeline"
    assert inferred(PAPERS[0]) == arxiv_classifier(PAPERS[0])


def test_arxiv_classification_gives_label_scores_and_fusion_weights(arxiv_classifier, saved_model, tiny_tokenizer):
    result = arxiv_classifier(PAPERS[0])
    expected = probabilities(saved_model, tiny_tokenizer, PAPERS[0])
    assert result["label"] == LABELS[int(expected.argmax())]
    assert result["score"] == pytest.approx(expected.max().item(), rel=1e-5)
    assert list(result["scores"]) == LABELS
    assert result["scores"] == pytest.approx(dict(zip(LABELS, expected.tolist())), rel=1e-5)
    assert sum(result["scores"].values()) == pytest.approx(1.0)
    assert set(result["fusion_weights"]) == {"title", "abstract"}
    assert sum(result["fusion_weights"].values()) == pytest.approx(1.0)


def test_most_attended_words_are_the_inputs_sorted_by_the_models_attention(
    arxiv_classifier, saved_model, tiny_tokenizer
):
    paper = PAPERS[1]  # "zebra" is not in the vocabulary
    result = arxiv_classifier(paper, top_words=100)
    title_attention, abstract_attention, fusion = attentions(saved_model, tiny_tokenizer, paper)

    for field, attention in (("title", title_attention[0]), ("abstract", abstract_attention[0])):
        words = tiny_tokenizer.split_words(paper[field], field)
        listed = result[f"{field}_words"]
        assert sorted(item["word"] for item in listed) == sorted(words)
        weights = [item["attention"] for item in listed]
        assert weights == sorted(weights, reverse=True)
        assert sorted(weights) == pytest.approx(sorted(attention.tolist()), abs=1e-6)
    assert "zebra" in [item["word"] for item in result["title_words"]]  # shown as written, not <UNK>
    assert result["fusion_weights"]["title"] == pytest.approx(fusion[0, 0].item(), abs=1e-6)


def test_each_attended_word_gives_its_position_in_the_field(arxiv_classifier, saved_model, tiny_tokenizer):
    paper = {"title": "deep networks deep networks", "abstract": "attention attention language models attention"}
    result = arxiv_classifier(paper, top_words=100)
    title_attention, abstract_attention, _ = attentions(saved_model, tiny_tokenizer, paper)

    for field, attention in (("title", title_attention[0]), ("abstract", abstract_attention[0])):
        words = tiny_tokenizer.split_words(paper[field], field)
        listed = result[f"{field}_words"]
        assert sorted(item["position"] for item in listed) == list(range(len(words)))
        for item in listed:  # repeated words too: each position has its own weight
            assert item["word"] == words[item["position"]]
            assert item["attention"] == pytest.approx(attention[item["position"]].item(), abs=1e-6)


def test_top_words_limits_the_words_of_each_field(arxiv_classifier):
    default = arxiv_classifier(PAPERS[0])
    assert len(default["title_words"]) == 5 and len(default["abstract_words"]) == 5
    two = arxiv_classifier(PAPERS[0], top_words=2)
    assert two["title_words"] == default["title_words"][:2]
    assert two["abstract_words"] == default["abstract_words"][:2]


def test_words_beyond_the_maximum_length_are_not_listed(arxiv_classifier):
    abstract = " ".join(f"w{i}" for i in range(40))
    result = arxiv_classifier({"title": "deep networks", "abstract": abstract}, top_words=100)
    assert sorted(item["word"] for item in result["abstract_words"]) == sorted(f"w{i}" for i in range(16))


def test_a_list_of_papers_gives_one_result_each(arxiv_classifier):
    results = arxiv_classifier(PAPERS)
    assert [r["label"] for r in results] == [arxiv_classifier(p)["label"] for p in PAPERS]


def test_batched_pipeline_gives_the_unbatched_results(arxiv_classifier):
    papers = PAPERS + [{"title": "Graph networks", "abstract": "molecule"}]
    batched = arxiv_classifier(papers, batch_size=3, top_words=100)
    for paper, result in zip(papers, batched):
        alone = arxiv_classifier(paper, top_words=100)
        assert result["label"] == alone["label"]
        assert result["scores"] == pytest.approx(alone["scores"], abs=1e-6)
        for field in ("title_words", "abstract_words"):
            assert sorted(w["word"] for w in result[field]) == sorted(w["word"] for w in alone[field])


def test_a_paper_with_a_title_only_is_read_whole(arxiv_classifier):
    result = arxiv_classifier({"title": "Attention is all you need"})
    assert [w["word"] for w in sorted(result["abstract_words"], key=lambda w: w["position"])] == [
        "attention",
        "is",
        "all",
        "you",
        "need",
    ]
    assert sum(result["scores"].values()) == pytest.approx(1.0)


def test_a_text_alone_is_read_whole_the_same_in_both_pipelines(arxiv_classifier, text_classifier):
    text = "Attention is all you need. We propose a new network architecture based solely on attention"
    expected = arxiv_classifier({"title": "Attention is all you need.", "abstract": text}, top_words=100)
    for paper in (text, {"text": text}, {"title": text}, {"title": text, "abstract": ""}):
        assert arxiv_classifier(paper, top_words=100) == expected
    stock = text_classifier(text, top_k=None)
    assert {item["label"]: item["score"] for item in stock} == pytest.approx(expected["scores"], rel=1e-5)
    paired = arxiv_classifier({"text": "Attention is all you need", "text_pair": text})
    assert paired == arxiv_classifier({"title": "Attention is all you need", "abstract": text})


def test_words_after_the_titles_length_change_the_scores_of_a_text_alone(arxiv_classifier):
    words = "attention is all you need for language translation".split()  # the title keeps 8 words
    short = arxiv_classifier(" ".join(words))
    longer = arxiv_classifier(" ".join(words + ["we", "train", "deep", "convolutional", "networks", "on", "image"]))
    assert longer["scores"] != pytest.approx(short["scores"], abs=1e-6)


def test_anything_but_a_paper_is_rejected(arxiv_classifier):
    with pytest.raises(ValueError, match="text_pair"):
        arxiv_classifier({"summary": "Attention is all you need"})


def test_in_a_process_with_hf_hybrid_the_packages_pipeline_runs_without_remote_code(saved_model_dir, arxiv_classifier):
    # A folder whose config has `custom_pipelines` always needs trust_remote_code=True or pipeline_class=.
    local = pipeline(model=str(saved_model_dir), pipeline_class=ArxivClassificationPipeline)
    assert type(local) is ArxivClassificationPipeline  # the package's class, not a copy from the folder
    assert local.task == "arxiv-classification"
    assert local(PAPERS[0]) == arxiv_classifier(PAPERS[0])


def test_a_wide_model_says_how_much_of_the_decision_each_branch_carries(make_tiny_config, tiny_tokenizer):
    torch.manual_seed(0)
    model = HybridCNNLSTMForSequenceClassification(make_tiny_config(wide_branch=True, wide_bigram_buckets=64)).eval()
    with torch.no_grad():
        model.wide.weight.normal_()
    result = ArxivClassificationPipeline(model=model, tokenizer=tiny_tokenizer)(PAPERS[0])
    inputs = tiny_tokenizer(PAPERS[0]["title"], PAPERS[0]["abstract"], return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    best = LABELS.index(result["label"])
    wide = output.wide_logits[0]
    assert result["branch_scores"]["wide"] == pytest.approx(wide.softmax(-1)[best].item(), rel=1e-5)
    deep = (output.logits[0] - wide).softmax(-1)[best].item()
    assert result["branch_scores"]["deep"] == pytest.approx(deep, rel=1e-5)


def test_a_model_without_wide_branch_reports_no_branch_scores(arxiv_classifier):
    assert "branch_scores" not in arxiv_classifier(PAPERS[0])


# Options as NumPy and PyTorch give them: scalars of each, and 0-d arrays and tensors.
LIBRARY_NUMBERS = {
    "numpy float64 and int64": (np.float64, np.int64),
    "numpy float32 and int32": (np.float32, np.int32),
    "0-d numpy arrays": (np.array, np.array),
    "0-d torch tensors": (torch.tensor, torch.tensor),
}


@pytest.mark.parametrize("kind", list(LIBRARY_NUMBERS))
def test_numbers_of_any_library_are_options_and_results_are_plain_python(kind, arxiv_classifier):
    real, whole = LIBRARY_NUMBERS[kind]
    expected = arxiv_classifier(PAPERS, threshold=0.5, top_k=2, top_words=3)
    # before: "must be a probability from 0 to 1, got np.float32(0.5)", or a numpy bool in needs_review
    got = arxiv_classifier(PAPERS, threshold=real(0.5), top_k=whole(2), top_words=whole(3))
    assert json.dumps(got) == json.dumps(expected)
    assert all(type(result["needs_review"]) is bool for result in got)
    with pytest.raises(ValueError, match=r"`threshold` must be a probability from 0 to 1, got .*1\.5"):
        arxiv_classifier(PAPERS[0], threshold=real(1.5))
