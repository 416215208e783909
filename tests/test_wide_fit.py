"""`--wide_fit lbfgs`: the wide branch fitted alone, to the optimum of its regularised loss, before the rest of the
model trains, then kept fixed."""

import json

import numpy as np
import pytest
import safetensors.torch
import scipy.sparse
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Sequence, concatenate_datasets
from papers import make_multi_label_papers, make_papers, write_multi_label_csv
from sklearn.linear_model import LogisticRegression

from hf_hybrid import HybridCNNLSTMConfig, HybridCNNLSTMForSequenceClassification, HybridCNNLSTMTokenizer
from hf_hybrid.cli import main
from hf_hybrid.data import load_papers, tokenize_papers
from hf_hybrid.loading import load_trained
from hf_hybrid.trainer import build_trainer
from hf_hybrid.training_args import DataArguments, HybridTrainingArguments
from hf_hybrid.wide_fit import (
    CROSS_VALIDATION_MAX_PAPERS,
    DEFAULT_REGULARIZATION,
    HELD_OUT_WIDE_LOGITS,
    REGULARIZATION_CANDIDATES,
    branch_loss,
    fit_wide_branch,
    fold_assignment,
    label_targets,
    out_of_fold_logits,
    prepare_wide_branch,
    regularization_candidates,
    tfidf_rows,
    with_held_out_wide_logits,
)

LABELS = ["cs.AI", "cs.CL", "cs.CV", "cs.LG"]
MULTI_LABEL = "multi_label_classification"


def papers_table(multi_label: bool) -> Dataset:
    if multi_label:
        rows = make_multi_label_papers(n=120)
        labels = [sorted(LABELS.index(name) for name in row["categories"].split()) for row in rows]
    else:
        rows = make_papers(n_per_class=30, labels=LABELS)
        labels = [LABELS.index(row["category"]) for row in rows]
    return Dataset.from_dict(
        {"title": [r["title"] for r in rows], "abstract": [r["abstract"] for r in rows], "labels": labels}
    )


def wide_model(papers, multi_label: bool):
    texts = list(papers["title"]) + list(papers["abstract"])
    tokenizer = HybridCNNLSTMTokenizer.train_from_iterator(
        texts, min_frequency=1, max_title_length=8, max_abstract_length=32
    )
    config = HybridCNNLSTMConfig(
        vocab_size=len(tokenizer),
        embed_dim=16,
        num_filters=8,
        lstm_hidden=8,
        lstm_layers=1,
        classifier_hidden_sizes=[16],
        max_title_length=8,
        max_abstract_length=32,
        wide_branch=True,
        wide_bigram_buckets=128,
        id2label=dict(enumerate(LABELS)),
        problem_type=MULTI_LABEL if multi_label else "single_label_classification",
    )
    model = HybridCNNLSTMForSequenceClassification(config).eval()
    model.wide.count_document_frequencies(tokenizer, papers)
    return model, tokenizer


def to_scipy(rows: torch.Tensor) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix((rows.values().numpy(), tuple(rows.indices().numpy())), shape=rows.shape)


def test_the_tfidf_rows_times_the_weights_are_the_branchs_logits():
    papers = papers_table(multi_label=True)
    model, tokenizer = wide_model(papers, multi_label=True)
    torch.nn.init.normal_(model.wide.weight)
    torch.nn.init.normal_(model.wide.bias)
    encoded = tokenizer(papers["title"][:10], papers["abstract"][:10], padding=True, return_tensors="pt")
    logits = model(**encoded).wide_logits
    rows = tfidf_rows(model.wide, tokenizer, papers.select(range(10)), batch_size=4)
    torch.testing.assert_close(rows @ model.wide.weight.detach() + model.wide.bias.detach(), logits)


@pytest.mark.parametrize("multi_label", [True, False])
def test_the_fit_reaches_scikit_learns_logistic_regression_optimum(multi_label):
    papers = papers_table(multi_label)
    model, tokenizer = wide_model(papers, multi_label)
    summary = fit_wide_branch(model, tokenizer, papers, inverse_regularization=5.0, max_iterations=500)
    rows = to_scipy(tfidf_rows(model.wide, tokenizer, papers))
    present = np.unique(rows.indices)  # the columns of the features seen
    fitted = model.wide.weight.detach().numpy()
    if multi_label:
        targets = np.zeros((len(papers), len(LABELS)))
        for paper, ids in enumerate(papers["labels"]):
            targets[paper, ids] = 1
        # One binary problem per label, as one-vs-rest logistic regression solves them.
        fits = [LogisticRegression(C=5.0, tol=1e-10, max_iter=5000).fit(rows, targets[:, j]) for j in range(4)]
        expected = np.stack([fit.coef_[0] for fit in fits], axis=1)
        intercept = np.concatenate([fit.intercept_ for fit in fits])
        bias = model.wide.bias.detach().numpy()
    else:
        fit = LogisticRegression(C=5.0, tol=1e-10, max_iter=5000).fit(rows, papers["labels"])
        expected = fit.coef_.T
        # A softmax's biases are defined up to a constant added to all of them.
        intercept = fit.intercept_ - fit.intercept_.mean()
        bias = model.wide.bias.detach().numpy() - model.wide.bias.detach().numpy().mean()
    np.testing.assert_allclose(fitted[present], expected[present], atol=2e-3 * np.abs(expected).max())
    np.testing.assert_allclose(bias, intercept, atol=2e-3 * np.abs(expected).max())
    assert not fitted[np.setdiff1d(np.arange(len(fitted)), present)].any()  # features never seen stay at zero
    assert summary["method"] == "lbfgs" and 0 < summary["iterations"] <= 500


def test_fewer_iterations_stop_earlier_at_a_higher_objective():
    papers = papers_table(multi_label=True)
    model, tokenizer = wide_model(papers, multi_label=True)
    short = fit_wide_branch(model, tokenizer, papers, max_iterations=3, disable_progress_bar=True)
    full = fit_wide_branch(model, tokenizer, papers, max_iterations=300)
    assert short["iterations"] == 3 and full["iterations"] > 3
    assert short["loss_evaluations"] >= 3 and full["loss_evaluations"] > short["loss_evaluations"]
    assert full["objective"] < short["objective"]


@pytest.mark.parametrize("multi_label", [True, False])
def test_a_fresh_head_gets_its_wide_branch_fitted_by_lbfgs_with_c_by_cross_validation(tmp_path, multi_label):
    args = HybridTrainingArguments(output_dir=str(tmp_path))
    papers = papers_table(multi_label=multi_label)
    model, tokenizer = wide_model(papers, multi_label=multi_label)
    summary, held_out = prepare_wide_branch(model, tokenizer, papers, args, fresh_head=True)
    assert summary["method"] == "lbfgs" and summary["out_of_fold"]["folds"] == 3
    # C is the candidate whose out-of-fold logits have the lowest loss, and the branch is fitted with it.
    losses = summary["out_of_fold"]["cross_validation"]
    assert set(losses) == {"1", "10", "100"}
    assert summary["inverse_regularization"] == float(min(losses, key=losses.get))
    targets = label_targets(model, papers)
    assert float(branch_loss(model, held_out, targets)) == pytest.approx(min(losses.values()), abs=1e-6)
    assert held_out.shape == (len(papers), len(LABELS))
    assert not any(p.requires_grad for p in model.wide.parameters()) and model.wide.weight.abs().sum() > 0
    assert model.wide.bias.abs().sum() > 0
    # Resuming keeps the checkpoint's weights: no fit, still frozen; the out-of-fold logits are computed again.
    before = model.wide.weight.clone()
    model.wide.requires_grad_(True)
    summary, again = prepare_wide_branch(model, tokenizer, papers, args, fresh_head=True, resuming=True)
    assert {key: summary[key] for key in ("method", "inverse_regularization", "resumed")} == {
        "method": "lbfgs",
        "inverse_regularization": float(min(losses, key=losses.get)),
        "resumed": True,
    }
    torch.testing.assert_close(again, held_out)
    assert not any(p.requires_grad for p in model.wide.parameters())
    torch.testing.assert_close(model.wide.weight, before)
    # Without folds, the deep part learns on its own loss: no out-of-fold logits.
    no_folds = HybridTrainingArguments(output_dir=str(tmp_path), wide_folds=0)
    summary, held_out = prepare_wide_branch(model, tokenizer, papers, no_folds, fresh_head=True)
    assert "out_of_fold" not in summary and held_out is None
    # A given C is used as it is.
    given = HybridTrainingArguments(output_dir=str(tmp_path), wide_regularization=3.0)
    summary, held_out = prepare_wide_branch(model, tokenizer, papers, given, fresh_head=True)
    assert summary["inverse_regularization"] == 3.0 and "cross_validation" not in summary["out_of_fold"]
    # ... the branch fitted first, its folds started from it: the logits of folds started from zero.
    cold, _ = out_of_fold_logits(model, tokenizer, papers, 3, args.seed, 3.0, disable_progress_bar=True)
    torch.testing.assert_close(held_out, cold, atol=2e-3, rtol=1e-3)
    # Fine-tuning that keeps its head trains the branch beside the rest, unless asked.
    model, tokenizer = wide_model(papers, multi_label)
    assert prepare_wide_branch(model, tokenizer, papers, args, fresh_head=False) == (None, None)
    assert model.wide.weight.requires_grad and not model.wide.weight.any()
    # Trained jointly, the branch has no bias of its own (the deep head's carries the base rates).
    assert not model.wide.bias.requires_grad and not model.wide.bias.any()
    asked = HybridTrainingArguments(output_dir=str(tmp_path), wide_fit="lbfgs")
    assert prepare_wide_branch(model, tokenizer, papers, asked, fresh_head=False)[0]["method"] == "lbfgs"
    joint = HybridTrainingArguments(output_dir=str(tmp_path), wide_fit="joint")
    model, tokenizer = wide_model(papers, multi_label)
    assert prepare_wide_branch(model, tokenizer, papers, joint, fresh_head=True) == (None, None)
    assert model.wide.weight.requires_grad


def test_cross_validation_chooses_c_on_small_training_splits_only():
    assert regularization_candidates(None, 500, folds=3) == REGULARIZATION_CANDIDATES
    assert regularization_candidates(None, CROSS_VALIDATION_MAX_PAPERS + 1, folds=3) == (DEFAULT_REGULARIZATION,)
    assert regularization_candidates(None, 500, folds=0) == (DEFAULT_REGULARIZATION,)
    assert regularization_candidates(30.0, 500, folds=3) == (30.0,)


@pytest.mark.parametrize("multi_label", [True, False])
def test_each_papers_out_of_fold_logits_come_from_a_fit_on_the_other_folds(multi_label):
    papers = papers_table(multi_label)
    model, tokenizer = wide_model(papers, multi_label)
    fit_wide_branch(model, tokenizer, papers, disable_progress_bar=True)
    fitted = model.wide.weight.clone(), model.wide.bias.clone()
    logits, summary = out_of_fold_logits(model, tokenizer, papers, folds=3, seed=7, disable_progress_bar=True)
    assert summary["folds"] == 3 and len(summary["iterations"]) == 3
    # The model's own branch keeps its fit on every paper.
    torch.testing.assert_close((model.wide.weight, model.wide.bias), fitted)

    fold_of = fold_assignment(len(papers), 3, seed=7)
    assert sorted(torch.bincount(fold_of).tolist()) == [len(papers) // 3] * 3
    for fold in range(3):
        others = HybridCNNLSTMForSequenceClassification(model.config).eval()
        others.wide.idf.copy_(model.wide.idf)  # the idf stays that of every training paper, as in the fold fits
        fit_wide_branch(others, tokenizer, papers.select(torch.nonzero(fold_of != fold).flatten().tolist()))
        held_out = torch.nonzero(fold_of == fold).flatten()
        rows = tfidf_rows(others.wide, tokenizer, papers.select(held_out.tolist()))
        expected = rows @ others.wide.weight.detach() + others.wide.bias.detach()
        torch.testing.assert_close(logits[held_out], expected, atol=1e-4, rtol=1e-4)
    # A paper's held-out logits are worse than the fit's own on it: it was not seen.
    seen = tfidf_rows(model.wide, tokenizer, papers) @ model.wide.weight.detach() + model.wide.bias.detach()
    targets = label_targets(model, papers)
    loss = (
        model.label_loss if multi_label else (lambda scores, labels: model.label_loss(scores.log_softmax(-1), labels))
    )
    assert loss(logits, targets) > loss(seen, targets)
    with pytest.raises(ValueError, match="at least 2 folds"):
        out_of_fold_logits(model, tokenizer, papers, folds=1, seed=7)


@pytest.mark.parametrize("multi_label", [True, False])
def test_folds_started_from_the_fit_of_every_paper_reach_the_same_logits_in_fewer_iterations(multi_label):
    papers = papers_table(multi_label)
    model, tokenizer = wide_model(papers, multi_label)
    fit_wide_branch(model, tokenizer, papers, disable_progress_bar=True)
    cold, cold_summary = out_of_fold_logits(model, tokenizer, papers, folds=3, seed=7, disable_progress_bar=True)
    fitted = (model.wide.weight.detach(), model.wide.bias.detach())
    warm, warm_summary = out_of_fold_logits(
        model, tokenizer, papers, folds=3, seed=7, disable_progress_bar=True, start=fitted
    )
    torch.testing.assert_close(warm, cold, atol=2e-3, rtol=1e-3)
    assert sum(warm_summary["iterations"]) < sum(cold_summary["iterations"])


@pytest.mark.parametrize("final_fit", ["none", "all"])
def test_training_keeps_the_fitted_wide_branch_unchanged(tmp_path, final_fit):
    papers_csv = write_multi_label_csv(tmp_path / "papers.csv", n=160)
    output_dir = tmp_path / "model"
    flags = ["--embed_dim", "16", "--num_filters", "8", "--lstm_hidden", "8", "--lstm_layers", "1"]
    flags += ["--classifier_hidden_sizes", "16", "--min_frequency", "1", "--wide_bigram_buckets", "256"]
    flags += ["--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--disable_tqdm", "true"]
    flags += ["--dataloader_pin_memory", "false", "--seed", "0", "--init_embeddings", "random"]
    command = ["train", "--train_file", str(papers_csv), "--label_column", "categories"]
    command += ["--problem_type", MULTI_LABEL, "--output_dir", str(output_dir), *flags]
    assert main(command + ["--final_fit", final_fit]) == 0
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["wide_fit"]["method"] == "lbfgs" and results["wide_fit"]["iterations"] > 0
    card = (output_dir / "README.md").read_text()
    assert results["wide_fit"]["out_of_fold"]["folds"] == 3
    chosen = results["wide_fit"]["inverse_regularization"]
    assert (
        f"fitted first, alone, as an L2-regularised logistic regression (full-batch L-BFGS, C = {chosen}, chosen by "
        "3-fold cross-validation from 1, 10, 100), then kept fixed while the rest trained to correct its logits, as "
        "those of a fit on the other 2 of 3 folds" in " ".join(card.split())  # the card's lines wrap anywhere
    )

    # The saved branch is the fit of the papers it trained on (the training split, or every paper after the
    # final fit, which learns to correct it the same way), untouched by the epochs that followed.
    tokenizer, model = load_trained(output_dir)
    splits = load_papers(DataArguments(train_file=str(papers_csv), label_column="categories"), seed=0, multi_label=True)
    papers = concatenate_datasets([splits[name] for name in ("train", "validation", "test")])
    papers = papers if final_fit == "all" else splits["train"]
    if final_fit == "all":
        assert results["final_fit"]["train_papers"] == len(papers) == 160
    refitted = HybridCNNLSTMForSequenceClassification(model.config)
    refitted.wide.idf.copy_(model.wide.idf)
    fit_wide_branch(refitted, tokenizer, papers, inverse_regularization=chosen)
    torch.testing.assert_close(model.wide.weight, refitted.wide.weight)
    torch.testing.assert_close(model.wide.bias, refitted.wide.bias)


def test_the_wide_fit_flags_are_checked(tmp_path):
    with pytest.raises(ValueError, match="wide_regularization"):
        HybridTrainingArguments(output_dir=str(tmp_path), wide_regularization=0)
    with pytest.raises(ValueError, match="wide_fit_iterations"):
        HybridTrainingArguments(output_dir=str(tmp_path), wide_fit_iterations=0)
    with pytest.raises(ValueError, match="--wide_folds must be 0 \\(none\\) or 2 or more, got 1"):
        HybridTrainingArguments(output_dir=str(tmp_path), wide_folds=1)
    with pytest.raises(ValueError, match="--wide_fit must be one of lbfgs, joint"):
        HybridTrainingArguments(output_dir=str(tmp_path), wide_fit="sgd")


def test_a_model_saved_before_the_branch_had_a_bias_loads_unchanged(tmp_path):
    papers = papers_table(multi_label=True)
    model, tokenizer = wide_model(papers, multi_label=True)
    torch.nn.init.normal_(model.wide.weight)
    model.save_pretrained(tmp_path)
    weights = safetensors.torch.load_file(tmp_path / "model.safetensors")
    weights.pop("wide.bias")
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not reloaded.wide.bias.any()
    torch.testing.assert_close(reloaded.wide.weight, model.wide.weight)
    torch.testing.assert_close(reloaded.wide.idf, model.wide.idf)
    encoded = tokenizer(papers["title"][:4], papers["abstract"][:4], padding=True, return_tensors="pt")
    torch.testing.assert_close(reloaded(**encoded).logits, model(**encoded).logits)
    # Any other weight missing is still refused.
    weights.pop("wide.weight")
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(OSError, match="wide.weight missing"):
        HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path)


def test_with_held_out_wide_logits_the_deep_part_learns_on_the_loss_of_their_sum(tmp_path):
    papers = papers_table(multi_label=True)
    papers = papers.cast_column("labels", Sequence(ClassLabel(names=LABELS)))  # as `load_papers` leaves them
    model, tokenizer = wide_model(papers, multi_label=True)
    args = HybridTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, dataloader_pin_memory=False)
    _, held_out = prepare_wide_branch(model, tokenizer, papers, args, fresh_head=True)
    tokenized = tokenize_papers(DatasetDict(train=papers, validation=papers), tokenizer)
    tokenized["train"] = with_held_out_wide_logits(tokenized["train"], held_out)
    trainer = build_trainer(model.train(), tokenizer, tokenized, args, tmp_path / "staging")
    assert trainer.corrects_wide_branch
    batch = next(iter(trainer.get_train_dataloader()))  # the Trainer keeps the column for the loss
    assert batch[HELD_OUT_WIDE_LOGITS].shape == (8, len(LABELS))

    torch.manual_seed(0)
    loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    deep = outputs.logits - outputs.wide_logits
    expected = model.label_loss(deep + batch[HELD_OUT_WIDE_LOGITS], batch["labels"])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in model.wide.parameters())  # the fitted branch stays as it is
    assert model.classifier[-1].weight.grad.abs().sum() > 0

    # Papers without held-out logits (validation) are scored on the sum as the model predicts it.
    model.eval()
    plain = {key: value for key, value in batch.items() if key != HELD_OUT_WIDE_LOGITS}
    loss, outputs = trainer.compute_loss(model, plain, return_outputs=True)
    torch.testing.assert_close(loss, model.label_loss(outputs.logits, batch["labels"]))
    # Without the column, each part learns on its own loss, as before.
    own = build_trainer(
        model,
        tokenizer,
        tokenize_papers(DatasetDict(train=papers, validation=papers), tokenizer),
        args,
        tmp_path / "own",
    )
    assert not own.corrects_wide_branch
    torch.testing.assert_close(own.compute_loss(model, plain), model(**plain).loss)


def test_the_branchs_features_are_scikit_learns_sublinear_tfidf_of_the_same_words_and_pairs():
    from sklearn.feature_extraction.text import TfidfVectorizer

    papers = papers_table(multi_label=False)
    model, tokenizer = wide_model(papers, multi_label=False)  # 128 pair buckets: collisions, so compare ids
    assert model.config.wide_sublinear_tf
    rows = to_scipy(tfidf_rows(model.wide, tokenizer, papers)).toarray()

    def features(title, abstract):
        encoded = tokenizer([title], [abstract])
        ids = []
        for field in ("title", "abstract"):
            words = torch.tensor([encoded[f"{field}_input_ids"][0]])
            ids += model.wide.features(words, torch.ones_like(words, dtype=torch.bool))[0][0].tolist()
        return [str(i) for i in ids]

    vectorizer = TfidfVectorizer(analyzer=lambda paper: features(*paper), sublinear_tf=True)
    expected = vectorizer.fit_transform(list(zip(papers["title"], papers["abstract"]))).toarray()
    columns = [int(name) for name in vectorizer.get_feature_names_out()]
    np.testing.assert_allclose(rows[:, columns], expected, atol=1e-6)
    # Nothing else: a feature the papers never had weighs nothing, and so does <UNK> in an unseen paper.
    assert not np.delete(rows, columns, axis=1).any()
    unseen = Dataset.from_dict({"title": ["zzz qqq"], "abstract": [papers["abstract"][0]], "labels": [0]})
    row = to_scipy(tfidf_rows(model.wide, tokenizer, unseen)).toarray()[0]
    assert model.wide.idf[tokenizer.unk_token_id] == 0 and row[tokenizer.unk_token_id] == 0
    np.testing.assert_allclose(np.linalg.norm(row), 1.0, atol=1e-6)
