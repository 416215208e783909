"""Fitting the wide branch before the deep part trains: on its own loss it is an L2-regularised logistic
regression over the training papers' TF-IDF rows, a convex problem that full-batch L-BFGS solves far closer
to its optimum than two epochs of mini-batch AdamW do (most of its million features are rare). The fitted
weights are then frozen while the rest of the model trains.

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

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

LBFGS = "lbfgs"
JOINT = "joint"
WIDE_FITS = (LBFGS, JOINT)


@torch.no_grad()
def tfidf_rows(wide, tokenizer, papers, batch_size: int = 1000) -> torch.Tensor:
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
    (paper, feature), values = rows.indices(), rows.values()
    present, column = torch.unique(feature, return_inverse=True)
    matrix = _compressed(paper, column, values, (len(papers), len(present)))
    transposed = _compressed(column, paper, values, (len(present), len(papers)))
    targets = label_targets(model, papers)
    # The model's loss is a mean over every target (each paper's labels, for multi-label), where scikit-learn's
    # is a sum over the papers, times C.
    penalty = 1.0 / (2 * inverse_regularization * targets.numel())

    weight = torch.zeros(len(present), model.config.num_labels, requires_grad=True)
    bias = torch.zeros(model.config.num_labels, requires_grad=True)
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
        # The branch's own term of the model's loss (as in the model's forward).
        loss = model.label_loss(logits if model.config.is_multi_label else logits.log_softmax(dim=-1), targets)
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
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[present] = weight.detach().to(wide.weight.dtype)
        wide.bias.copy_(bias.detach())
    summary = {
        "method": LBFGS,
        "inverse_regularization": inverse_regularization,
        "iterations": optimizer.state[weight]["n_iter"],
        "loss_evaluations": evaluations,
        "objective": round(float(final), 6),
        "seconds": round(time.perf_counter() - started, 1),
    }
    logger.info("wide branch fitted by L-BFGS: %s", summary)
    return summary
