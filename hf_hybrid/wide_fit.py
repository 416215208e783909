"""Fitting the wide branch before the deep part trains: on its own loss it is an L2-regularised logistic
regression over the training papers' TF-IDF rows, a convex problem that full-batch L-BFGS solves far closer
to its optimum than two epochs of mini-batch AdamW do (most of its million features are rare). The fitted
weights are then frozen while the rest of the model trains, learning to correct the branch's logits as they are
on papers it was not fitted on (`out_of_fold_logits`). `prepare_wide_branch` is that step of a training run.

Example:

```python
>>> from hf_hybrid.wide_fit import fit_wide_branch
>>> summary = fit_wide_branch(model, tokenizer, train, inverse_regularization=10.0)  # doctest: +SKIP
>>> summary["iterations"], summary["objective"]  # doctest: +SKIP
```
"""

import logging
import time
import warnings
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .distributed import share_from_main_process

logger = logging.getLogger(__name__)

LBFGS = "lbfgs"
JOINT = "joint"
WIDE_FITS = (LBFGS, JOINT)
# The inverse L2 strengths C that cross-validation chooses from, and the one taken without it: on a training split
# of more than `CROSS_VALIDATION_MAX_PAPERS` papers, where the choice matters least and each fit costs most.
REGULARIZATION_CANDIDATES = (1.0, 10.0, 100.0)
DEFAULT_REGULARIZATION = 10.0
CROSS_VALIDATION_MAX_PAPERS = 10_000
# A training column: each paper's wide logits from a fit that did not see it (`out_of_fold_logits`).
HELD_OUT_WIDE_LOGITS = "held_out_wide_logits"


def regularization_candidates(given: float | None, papers: int, folds: int) -> tuple[float, ...]:
    """The C values to fit the branch with: `given`, or, with folds to cross-validate on and at most
    `CROSS_VALIDATION_MAX_PAPERS` training papers, `REGULARIZATION_CANDIDATES`, else `DEFAULT_REGULARIZATION`."""
    if given is not None:
        return (float(given),)
    if folds and papers <= CROSS_VALIDATION_MAX_PAPERS:
        return REGULARIZATION_CANDIDATES
    return (DEFAULT_REGULARIZATION,)


@torch.no_grad()
def tfidf_rows(wide, tokenizer, papers, batch_size: int = 250) -> torch.Tensor:
    """The papers' rows of the wide branch's feature matrix, as a coalesced sparse COO tensor of shape
    (papers, features): row `i` times the branch's weight, plus its bias, is the branch's logits for paper `i`."""
    rows, columns, values = [], [], []
    for start in range(0, len(papers), batch_size):
        batch = papers[start : start + batch_size]
        encoded = tokenizer(batch["title"], batch["abstract"], padding=True, return_tensors="pt")
        ids, weights = wide.weighted_features(
            encoded["title_input_ids"],
            encoded["title_attention_mask"].bool(),
            encoded["abstract_input_ids"],
            encoded["abstract_attention_mask"].bool(),
        )
        paper, position = weights.nonzero(as_tuple=True)
        rows.append(paper + start)
        columns.append(ids[paper, position])
        values.append(weights[paper, position])
    # Coalescing adds up the weights of a feature's occurrences in one paper, as the branch's forward does.
    return torch.sparse_coo_tensor(
        torch.stack([torch.cat(rows), torch.cat(columns)]),
        torch.cat(values),
        (len(papers), wide.weight.shape[0]),
        check_invariants=True,
    ).coalesce()


def _compressed(rows, columns, values, shape) -> torch.Tensor:
    """A CSR matrix, for its fast products with dense ones."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_coo_tensor(torch.stack([rows, columns]), values, shape, check_invariants=True)
        return matrix.coalesce().to_sparse_csr()


def label_targets(model, papers) -> torch.Tensor:
    """The papers' labels as the model's loss takes them: multi-hot rows, or class ids."""
    labels = papers["labels"]
    if model.config.is_multi_label:
        targets = torch.zeros(len(labels), model.config.num_labels)
        for paper, ids in enumerate(labels):
            targets[paper, ids] = 1.0
        return targets
    return torch.tensor(labels)


def fit_wide_branch(
    model,
    tokenizer,
    papers,
    inverse_regularization: float = 10.0,
    max_iterations: int = 300,
    disable_progress_bar: bool = False,
) -> dict:
    """Sets the wide branch's weights to those minimising its own loss on `papers` (the model's loss on the
    branch's logits: binary cross-entropy for multi-label, cross-entropy of the log-softmax otherwise, with the
    model's class weights) plus the L2 penalty that makes it scikit-learn's `LogisticRegression(C=C)` objective
    (one-vs-rest for multi-label; without class weights, which scikit-learn's mean does not divide by), with
    the branch's per-label bias unpenalised, as scikit-learn's intercept.

    Only the features present in `papers` are fitted (the penalty keeps the others at zero), by full-batch
    L-BFGS with a strong-Wolfe line search, a progress bar counting its loss evaluations unless
    `disable_progress_bar`. Returns the iterations run, the final objective and the seconds.
    """
    started = time.perf_counter()
    wide = model.wide
    rows = tfidf_rows(wide, tokenizer, papers)
    weight, bias, summary = _solve(
        model, rows, label_targets(model, papers), inverse_regularization, max_iterations, disable_progress_bar
    )
    with torch.no_grad():
        wide.weight.copy_(weight.to(wide.weight.dtype))
        wide.bias.copy_(bias)
    summary = {"method": LBFGS, "inverse_regularization": inverse_regularization, **summary}
    summary["seconds"] = round(time.perf_counter() - started, 1)
    logger.info("wide branch fitted by L-BFGS: %s", summary)
    return summary


def out_of_fold_logits(
    model,
    tokenizer,
    papers,
    folds: int,
    seed: int,
    inverse_regularization: float | Sequence[float] = 10.0,
    max_iterations: int = 300,
    disable_progress_bar: bool = False,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict]:
    """The wide branch's logits for each of `papers` from a fit that did not see it: the papers are dealt into
    `folds` random folds (seeded by `seed`), and each fold is scored by the branch fitted as `fit_wide_branch`
    does on the other folds. The model's own branch is left as it is. Returns (logits, what the fits did).

    `start` (the branch's weight and bias, e.g. its fit on all of `papers` with the same C) is where each fold's
    search begins, else zero. The problem is convex, so a fold reaches the same optimum from anywhere; from the
    fit of all the papers, which differs from it by a third of the data, it takes fewer iterations.

    These are the scores the deep part learns to correct (training's `--wide_folds`): on the papers it was
    fitted on, the branch is nearly always right, so its own logits there would leave the rest nothing to learn.

    Given several `inverse_regularization` values (C), each fold is fitted with each of them (in increasing order,
    each fit starting from the last one's weights) and the C whose out-of-fold logits have the lowest loss is
    chosen (cross-validation): the logits returned are that C's, and the summary's `inverse_regularization` names it,
    with every candidate's loss in `cross_validation`.
    """
    if folds < 2:
        raise ValueError(f"out-of-fold logits need at least 2 folds, got {folds}")
    candidates = sorted({float(c) for c in _as_sequence(inverse_regularization)})
    started = time.perf_counter()
    rows = tfidf_rows(model.wide, tokenizer, papers)
    targets = label_targets(model, papers)
    fold_of = fold_assignment(len(papers), folds, seed)
    logits = torch.zeros(len(candidates), len(papers), model.config.num_labels)
    (paper, _), values = rows.indices(), rows.values()
    fits = []
    for fold in range(folds):
        held_out = fold_of == fold
        # The fit sees the rows of the other folds' papers only.
        kept = ~held_out[paper]
        fitted_rows = torch.sparse_coo_tensor(
            rows.indices()[:, kept], values[kept], rows.shape, check_invariants=True
        ).coalesce()
        previous = start
        for candidate, c in enumerate(candidates):
            weight, bias, summary = _solve(
                model,
                fitted_rows,
                targets,
                c,
                max_iterations,
                disable_progress_bar,
                papers_fitted=~held_out,
                start=previous,
            )
            logits[candidate, held_out] = (rows @ weight + bias)[held_out]
            previous = (weight, bias)
            fits.append(summary)
    losses = [float(branch_loss(model, candidate_logits, targets)) for candidate_logits in logits]
    chosen = min(range(len(candidates)), key=losses.__getitem__)
    summary = {
        "folds": folds,
        "inverse_regularization": candidates[chosen],
        "iterations": [fit["iterations"] for fit in fits],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if len(candidates) > 1:
        summary["cross_validation"] = {f"{c:g}": round(loss, 6) for c, loss in zip(candidates, losses)}
    logger.info("wide branch's out-of-fold logits: %s", summary)
    return logits[chosen], summary


def branch_loss(model, logits, targets) -> torch.Tensor:
    """The model's loss on the wide branch's `logits` (of a multi-label model, its log-odds; else its raw scores)."""
    return model.label_loss(logits if model.config.is_multi_label else logits.log_softmax(dim=-1), targets)


def _as_sequence(values) -> tuple:
    return tuple(values) if isinstance(values, (list, tuple)) else (values,)


def fold_assignment(count: int, folds: int, seed: int) -> torch.Tensor:
    """Each of `count` papers' fold, 0 to `folds - 1`: the papers in a random order (seeded) dealt in turn, so
    that the folds' sizes differ by one at most."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)) % folds


def _solve(
    model,
    rows,
    targets,
    inverse_regularization: float,
    max_iterations: int,
    disable_progress_bar: bool,
    papers_fitted: torch.Tensor | None = None,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The branch's weights (all its features) and bias minimising its regularised loss on the coalesced TF-IDF
    `rows` and `targets` of the papers marked in `papers_fitted` (all of them by default), and the fit's summary;
    the search starts from `start` (weights and bias of all features, e.g. another C's fit), else from zero."""
    if papers_fitted is None:
        papers_fitted = torch.ones(rows.shape[0], dtype=torch.bool)
    position = torch.cumsum(papers_fitted, 0) - 1  # each fitted paper's row in the fitted problem
    (paper, feature), values = rows.indices(), rows.values()
    present, column = torch.unique(feature, return_inverse=True)
    shape = (int(papers_fitted.sum()), len(present))
    matrix = _compressed(position[paper], column, values, shape)
    transposed = _compressed(column, position[paper], values, shape[::-1])
    targets = targets[papers_fitted]
    # The model's loss is a mean over every target (each paper's labels, for multi-label), where scikit-learn's
    # is a sum over the papers, times C.
    penalty = 1.0 / (2 * inverse_regularization * targets.numel())

    if start is None:
        weight, bias = torch.zeros(len(present), model.config.num_labels), torch.zeros(model.config.num_labels)
    else:
        weight, bias = start[0][present].clone(), start[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    # The line search may evaluate the loss several times in an iteration: iterations, not evaluations, bound it.
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=max_iterations,
        max_eval=3 * max_iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
    )
    bar = tqdm(desc="Fitting the wide branch (L-BFGS)", unit=" evaluations", disable=disable_progress_bar)
    evaluations = 0

    def objective():
        nonlocal evaluations
        evaluations += 1
        bar.update()
        logits = (matrix @ weight.detach() + bias.detach()).requires_grad_()
        loss = branch_loss(model, logits, targets)
        loss.backward()
        with torch.no_grad():
            weight.grad = transposed @ logits.grad + 2 * penalty * weight
            bias.grad = logits.grad.sum(dim=0)
            value = loss + penalty * weight.pow(2).sum()
        bar.set_postfix(objective=f"{value.item():.5f}", refresh=False)
        return value

    optimizer.step(objective)
    final = objective()
    bar.close()
    full = torch.zeros(rows.shape[1], model.config.num_labels)
    full[present] = weight.detach()
    summary = {
        "iterations": optimizer.state[weight]["n_iter"],
        "loss_evaluations": evaluations,
        "objective": round(float(final), 6),
    }
    return full, bias.detach(), summary


def prepare_wide_branch(model, tokenizer, train, training_args, fresh_head: bool, resuming: bool = False):
    """With `--wide_fit lbfgs` (the default for a model whose head starts fresh: a new model, or fine-tuning to new
    labels), fits the wide branch on the `train` papers (unless `resuming`: the checkpoint holds the fitted weights)
    and keeps it fixed while the rest of the model trains, and with `--wide_folds` computes the branch's out-of-fold
    logits of those papers, for the rest to learn to correct (choosing C on them, unless `--wide_regularization` is
    given); with `joint`, only the branch's bias stays fixed. Returns (what the fit did, the out-of-fold logits),
    each None where there is none. On several processes the main one fits, and gives the others the branch's
    weights and the logits (the summary: None there)."""
    if model.wide is None:
        return None, None
    method = training_args.wide_fit or (LBFGS if fresh_head else JOINT)
    if method == JOINT:
        # Trained beside the deep head, the branch keeps no bias of its own: the head's carries the base rates.
        model.wide.bias.requires_grad_(False)
        return None, None
    model.wide.requires_grad_(False)
    folds = training_args.wide_folds
    summary, logits = None, None
    if training_args.process_index == 0:
        candidates = regularization_candidates(training_args.wide_regularization, len(train), folds)
        iterations, quiet = training_args.wide_fit_iterations, training_args.disable_tqdm

        def fit(regularization):
            if resuming:
                return {"method": LBFGS, "inverse_regularization": regularization, "resumed": True}
            return fit_wide_branch(model, tokenizer, train, regularization, iterations, disable_progress_bar=quiet)

        # With C given, the branch is fitted first and the folds start from it (fewer iterations, same optimum);
        # with C to choose, the folds choose it first.
        summary = fit(candidates[0]) if len(candidates) == 1 else None
        if folds:
            start = (model.wide.weight.detach(), model.wide.bias.detach()) if summary else None
            logits, out_of_fold = out_of_fold_logits(
                model,
                tokenizer,
                train,
                folds,
                training_args.seed,
                candidates,
                iterations,
                disable_progress_bar=quiet,
                start=start,
            )
            chosen = out_of_fold.pop("inverse_regularization")
            summary = summary or fit(chosen)
            summary["out_of_fold"] = out_of_fold
    elif folds:
        logits = torch.zeros(len(train), model.config.num_labels)
    share_from_main_process(training_args, [model.wide.weight, model.wide.bias, *([] if logits is None else [logits])])
    return summary, logits


def with_held_out_wide_logits(tokenized_train, logits):
    """The tokenized training papers with their out-of-fold wide logits as a column (unchanged without them)."""
    if logits is None:
        return tokenized_train
    return tokenized_train.add_column(HELD_OUT_WIDE_LOGITS, logits.tolist())
