"""The stock Hugging Face tools, called as they call a model, on a trained 4-label folder: the fine-tuning scripts
`run_glue.py` and `run_classification.py` of the transformers examples (their tokenizer call, `Trainer` and saved
folder, reproduced here: the scripts cannot be downloaded in tests), the `text-classification` pipeline with its
arguments, datasets' `KeyDataset`/`KeyPairDataset`, and `evaluate.evaluator`. docs/works_with.md has the real scripts'
runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import evaluate
import numpy as np
import pytest
import torch
from datasets import Dataset, load_dataset
from papers import make_papers
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    pipeline,
)
from transformers.pipelines.pt_utils import KeyDataset, KeyPairDataset

from hf_hybrid import DataArguments, HybridTrainingArguments, ModelArguments, train_model

from fresh_process import without_hf_hybrid

pytest.register_assert_rewrite("hub_fixtures")  # before its import below, so that its asserts explain failures

from hub_fixtures import client_env, run  # noqa: E402

pytest_plugins = ["hub_fixtures"]

LABELS = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]
# The scripts' defaults: every paper padded to --max_seq_length 128, cut there too, with --pad_to_max_length.
MAX_SEQ_LENGTH = 128
ACCURACY_MODULE = """
import datasets
import evaluate


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="accuracy",
            citation="",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": sum(int(p == r) for p, r in zip(predictions, references)) / len(references)}
"""


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A 4-label model trained and calibrated by hf-hybrid: the folder a user fine-tunes with the scripts."""
    work = tmp_path_factory.mktemp("works_with")
    papers = work / "papers.csv"
    _write_csv(papers, make_papers(40, labels=LABELS, seed=0), label_column="category")
    model_args = ModelArguments(
        embed_dim=16,
        num_filters=8,
        lstm_hidden=8,
        lstm_layers=1,
        classifier_hidden_sizes=[16],
        vocab_size=500,
        min_frequency=1,
        wide_bigram_buckets=256,
        max_abstract_length=40,
    )
    training_args = HybridTrainingArguments(
        output_dir=str(work / "model"),
        num_train_epochs=4,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        seed=0,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    train_model(model_args, DataArguments(train_file=str(papers)), training_args)
    return work / "model"


@pytest.fixture(scope="module")
def glue_files(tmp_path_factory):
    """New papers as run_glue.py and run_classification.py read them: JSON Lines of title, abstract and label. (Not
    CSV: `datasets` 5.2 keeps a CSV's text label column text when the scripts map it to ids, for any model.)"""
    folder = tmp_path_factory.mktemp("glue_files")
    files = {}
    for split, seed in (("train", 1), ("validation", 2)):
        rows = [
            {"title": p["title"], "abstract": p["abstract"], "label": p["category"]}
            for p in make_papers(12, labels=LABELS, seed=seed)
        ]
        Dataset.from_list(rows).to_json(str(folder / f"{split}.json"))
        files[split] = str(folder / f"{split}.json")
    return files


def _write_csv(path, papers, label_column="label"):
    rows = [{"title": p["title"], "abstract": p["abstract"], label_column: p["category"]} for p in papers]
    Dataset.from_list(rows).to_csv(str(path), index=False)
    return path


def load_as_the_scripts_do(folder):
    """AutoConfig, AutoTokenizer and AutoModelForSequenceClassification with trust_remote_code, as both scripts."""
    config = AutoConfig.from_pretrained(folder, num_labels=len(LABELS), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, config=config, trust_remote_code=True)
    return config, tokenizer, model


def glue_datasets(tokenizer, model, files, joined: bool = False):
    """run_glue.py's preprocessing of a CSV with two text columns (title, abstract) and a label; with `joined`,
    run_classification.py's with `--text_column_names title,abstract`: the columns joined into one text by a space."""
    raw = load_dataset("json", data_files=files)
    label_to_id = {label: i for i, label in enumerate(sorted(raw["train"].unique("label")))}
    model.config.label2id = label_to_id
    model.config.id2label = {i: label for label, i in label_to_id.items()}
    max_seq_length = min(MAX_SEQ_LENGTH, tokenizer.model_max_length)

    def preprocess(examples):
        if joined:
            sentences = [title + " " + abstract for title, abstract in zip(examples["title"], examples["abstract"])]
            result = tokenizer(sentences, padding="max_length", max_length=max_seq_length, truncation=True)
        else:
            args = (examples["title"], examples["abstract"])
            result = tokenizer(*args, padding="max_length", max_length=max_seq_length, truncation=True)
        result["label"] = [label_to_id[label] for label in examples["label"]]
        return result

    return raw.map(preprocess, batched=True)


def glue_trainer(model, tokenizer, datasets, output_dir, learning_rate):
    def compute_metrics(prediction):
        return {"accuracy": float((prediction.predictions.argmax(axis=1) == prediction.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=learning_rate,
        num_train_epochs=2,
        per_device_train_batch_size=8,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="epoch",
        dataloader_pin_memory=False,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        compute_metrics=compute_metrics,
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )


# --- run_glue.py and run_classification.py ---


def test_a_glue_script_fine_tune_at_learning_rate_0_leaves_the_model_as_it_was(trained_folder, glue_files, tmp_path):
    _, tokenizer, model = load_as_the_scripts_do(trained_folder)
    trainer = glue_trainer(model, tokenizer, glue_datasets(tokenizer, model, glue_files), tmp_path / "out", 0.0)
    before = trainer.evaluate()
    trainer.train()
    trainer.save_model()
    after = trainer.evaluate()
    assert after["eval_accuracy"] == before["eval_accuracy"]
    assert after["eval_loss"] == pytest.approx(before["eval_loss"], rel=1e-6)
    start, saved = load_file(trained_folder / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert saved.keys() == start.keys()
    for name in start:  # BatchNorm's running statistics included: they are the trained model's
        assert torch.equal(saved[name], start[name]), name
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    trained = json.loads((trained_folder / "config.json").read_text())
    assert config["calibration_temperature"] == trained["calibration_temperature"] != 1.0
    assert config["calibrated_weights_sha256"] == trained["calibrated_weights_sha256"]


def test_a_glue_script_fine_tune_leaves_a_folder_both_pipelines_load_in_a_fresh_process(
    trained_folder, glue_files, tmp_path, caplog
):
    _, tokenizer, model = load_as_the_scripts_do(trained_folder)
    trainer = glue_trainer(model, tokenizer, glue_datasets(tokenizer, model, glue_files), tmp_path / "out", 1e-2)
    trainer.train()
    trainer.save_model()
    out = tmp_path / "out"
    for folder in (out, *sorted(out.glob("checkpoint-*"))):
        assert (folder / "pipeline_arxiv_classification.py").is_file()
        declared = json.loads((folder / "config.json").read_text())["custom_pipelines"]["arxiv-classification"]
        assert declared["impl"] == "pipeline_arxiv_classification.ArxivClassificationPipeline"
    # The weights changed: the calibration fitted for the old ones is no longer claimed.
    config = json.loads((out / "config.json").read_text())
    assert config["calibration_temperature"] == 1.0 and config["calibrated_weights_sha256"] is None
    papers = [{"title": p["title"], "abstract": p["abstract"]} for p in make_papers(2, labels=LABELS, seed=3)]
    with torch.no_grad():
        inputs = tokenizer([p["title"] for p in papers], [p["abstract"] for p in papers], padding=True)
        expected = model.eval()(**inputs.convert_to_tensors("pt")).logits.softmax(-1).tolist()
    script = without_hf_hybrid(
        f"""
        from transformers import pipeline
        papers = {papers!r}
        stock = pipeline("text-classification", model={str(out)!r}, trust_remote_code=True)
        explain = pipeline("arxiv-classification", model={str(out)!r}, trust_remote_code=True)
        pairs = [{{"text": p["title"], "text_pair": p["abstract"]}} for p in papers]
        print(json.dumps({{
            "stock": stock(pairs, top_k=None),
            "explain": [r["scores"] for r in explain(papers)],
            **hf_hybrid_absence(),
        }}))
        """
    )
    result = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert result["hf_hybrid_refused"] and result["hf_hybrid_modules"] == []
    labels = [model.config.id2label[i] for i in range(len(LABELS))]
    for scores, stock, probabilities in zip(result["explain"], result["stock"], expected):
        assert scores == pytest.approx(dict(zip(labels, probabilities)), rel=1e-4)
        assert {item["label"]: item["score"] for item in stock} == pytest.approx(scores, rel=1e-4)


def test_run_classification_joined_columns_are_read_whole_abstract_included(trained_folder, glue_files, tmp_path):
    _, tokenizer, model = load_as_the_scripts_do(trained_folder)
    datasets = glue_datasets(tokenizer, model, glue_files, joined=True)
    row = datasets["validation"][0]
    text = row["title"] + " " + row["abstract"]
    length = tokenizer.max_abstract_length
    assert sum(row["abstract_attention_mask"]) == min(length, len(tokenizer.split_words(text, "abstract")))
    abstract_ids = row["abstract_input_ids"][: sum(row["abstract_attention_mask"])]
    assert tokenizer.convert_ids_to_tokens(abstract_ids) == tokenizer.split_words(text, "abstract")
    assert len(row["abstract_input_ids"]) == min(MAX_SEQ_LENGTH, length)  # padded as --pad_to_max_length asks
    trainer = glue_trainer(model, tokenizer, datasets, tmp_path / "out", 0.0)
    before = trainer.evaluate()["eval_accuracy"]
    trainer.train()
    assert trainer.evaluate()["eval_accuracy"] == before


def test_a_glue_script_fine_tune_of_a_hub_repo(hub_server, hub_home, hub_model, glue_files, tmp_path):
    """The scripts' load, Trainer and save, from a repo of the Hub test server, in a process without hf_hybrid."""
    out = tmp_path / "out"
    script = without_hf_hybrid(
        f"""
        from datasets import load_dataset
        from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, Trainer,
                                  TrainingArguments, default_data_collator, pipeline)
        repo = {hub_model.repo_id!r}
        raw = load_dataset("json", data_files={glue_files!r})
        raw = raw.filter(lambda row: row["label"] in ("cs.AI", "cs.CL", "cs.CV"))
        labels = sorted(raw["train"].unique("label"))
        config = AutoConfig.from_pretrained(repo, num_labels=len(labels), trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(repo, config=config, trust_remote_code=True)
        model.config.label2id = {{label: i for i, label in enumerate(labels)}}
        model.config.id2label = {{i: label for i, label in enumerate(labels)}}
        def preprocess(examples):
            result = tokenizer(examples["title"], examples["abstract"], padding="max_length", max_length=128,
                               truncation=True)
            result["label"] = [model.config.label2id[label] for label in examples["label"]]
            return result
        data = raw.map(preprocess, batched=True)
        args = TrainingArguments({str(out)!r}, learning_rate=0.0, num_train_epochs=1, report_to=[], use_cpu=True,
                                 disable_tqdm=True, save_strategy="no", per_device_train_batch_size=8)
        accuracy = lambda p: {{"accuracy": float((p.predictions.argmax(1) == p.label_ids).mean())}}
        trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                          compute_metrics=accuracy, processing_class=tokenizer, data_collator=default_data_collator)
        before = trainer.evaluate()["eval_accuracy"]
        trainer.train()
        trainer.save_model()
        print(json.dumps({{"before": before, "after": trainer.evaluate()["eval_accuracy"], **hf_hybrid_absence()}}))
        """
    )
    env = client_env(hub_server, hub_home())
    trained = json.loads(run([sys.executable, "-c", script], env).check().stdout.strip().splitlines()[-1])
    assert trained["hf_hybrid_refused"] and trained["after"] == trained["before"]
    load = without_hf_hybrid(
        f"""
        from transformers import pipeline
        paper = {{"title": "Image segmentation of video", "abstract": "pixels camera detection scenes"}}
        explain = pipeline("arxiv-classification", model={str(out)!r}, trust_remote_code=True)(paper)
        stock = pipeline("text-classification", model={str(out)!r}, trust_remote_code=True)(
            {{"text": paper["title"], "text_pair": paper["abstract"]}})
        print(json.dumps({{"explain": explain["label"], "stock": stock["label"]}}))
        """
    )
    labels = json.loads(run([sys.executable, "-c", load], env).check().stdout.strip().splitlines()[-1])
    assert labels["explain"] == labels["stock"]


# --- the text-classification pipeline ---


@pytest.fixture(scope="module")
def text_classifier(trained_folder):
    return pipeline("text-classification", model=str(trained_folder), trust_remote_code=True)


PAPERS = [
    {"title": "Planning agents with symbolic search", "abstract": "reasoning logic knowledge solver heuristic"},
    {"title": "Image segmentation", "abstract": "pixels camera detection video scene depth convolutional visual"},
    {"title": "Stochastic gradient bounds", "abstract": "optimization convergence loss regularization kernel"},
]


def test_truncation_and_max_length_as_for_any_model(text_classifier):
    pair = {"text": PAPERS[1]["title"], "text_pair": PAPERS[1]["abstract"]}
    assert text_classifier(pair, truncation=True, max_length=512) == text_classifier(pair)
    assert text_classifier(pair, truncation=True, max_length=2) != text_classifier(pair)
    with pytest.raises(ValueError, match="no token type ids"):
        text_classifier(pair, return_token_type_ids=True)


def test_top_k_none_and_function_to_apply(text_classifier):
    model = text_classifier.model
    pair = {"text": PAPERS[0]["title"], "text_pair": PAPERS[0]["abstract"]}
    with torch.no_grad():
        logits = model(**text_classifier.tokenizer(pair["text"], pair["text_pair"], return_tensors="pt")).logits[0]
    every = text_classifier(pair, top_k=None)
    assert [item["label"] for item in every] == [LABELS[i] for i in logits.argsort(descending=True).tolist()]
    assert sum(item["score"] for item in every) == pytest.approx(1.0)
    raw = {item["label"]: item["score"] for item in text_classifier(pair, top_k=None, function_to_apply="none")}
    assert raw == pytest.approx(dict(zip(LABELS, logits.tolist())), rel=1e-5)
    sigmoid = {item["label"]: item["score"] for item in text_classifier(pair, top_k=None, function_to_apply="sigmoid")}
    assert sigmoid == pytest.approx(dict(zip(LABELS, logits.sigmoid().tolist())), rel=1e-5)


def test_batch_size_and_key_datasets_give_the_unbatched_results(text_classifier):
    pairs = [{"text": p["title"], "text_pair": p["abstract"]} for p in PAPERS]
    alone = [text_classifier(pair, top_k=None) for pair in pairs]
    for results in (
        text_classifier(pairs, top_k=None, batch_size=3),
        list(text_classifier(KeyPairDataset(Dataset.from_list(PAPERS), "title", "abstract"), top_k=None)),
    ):
        for result, expected in zip(results, alone):
            assert {r["label"]: r["score"] for r in result} == pytest.approx(
                {r["label"]: r["score"] for r in expected}, abs=1e-6
            )
    texts = [p["title"] + ". " + p["abstract"] for p in PAPERS]
    column = list(text_classifier(KeyDataset(Dataset.from_dict({"text": texts}), "text"), batch_size=2))
    for result, text in zip(column, texts):
        (expected,) = text_classifier(text)
        assert result["label"] == expected["label"] and result["score"] == pytest.approx(expected["score"], abs=1e-6)


def test_a_plain_string_is_read_whole(text_classifier):
    words = "planning agents with symbolic search for logic reasoning and knowledge solver heuristic".split()
    text = " ".join(words * 3)  # one sentence of 36 words: the title keeps 30
    shorter = text_classifier(" ".join((words * 3)[:30]), top_k=None)
    assert text_classifier(text, top_k=None) != shorter
    paper = text_classifier.tokenizer.read_fields(text, "")
    assert text_classifier(text, top_k=None) == text_classifier({"text": paper[0], "text_pair": paper[1]}, top_k=None)


# --- evaluate ---


@pytest.mark.parametrize("second_input_column", [None, "abstract"])
def test_evaluate_evaluator_with_the_model_and_tokenizer(trained_folder, tmp_path, second_input_column):
    module = tmp_path / "accuracy"
    module.mkdir()
    (module / "accuracy.py").write_text(ACCURACY_MODULE)
    _, tokenizer, model = load_as_the_scripts_do(trained_folder)
    papers = make_papers(5, labels=LABELS, seed=4)
    data = Dataset.from_dict(
        {
            "text": [p["title"] if second_input_column else p["title"] + ". " + p["abstract"] for p in papers],
            "abstract": [p["abstract"] for p in papers],
            "label": [LABELS.index(p["category"]) for p in papers],
        }
    )
    task = evaluate.evaluator("text-classification")
    result = task.compute(
        model_or_pipeline=model,
        tokenizer=tokenizer,
        data=data,
        metric=evaluate.load(str(module)),
        input_column="text",
        second_input_column=second_input_column,
        label_mapping=model.config.label2id,
    )
    with torch.no_grad():
        fields = (list(data["text"]), list(data["abstract"])) if second_input_column else (list(data["text"]),)
        logits = model.eval()(**tokenizer(*fields, padding=True, return_tensors="pt")).logits
    assert result["accuracy"] == pytest.approx(float((logits.argmax(-1).numpy() == np.array(data["label"])).mean()))
