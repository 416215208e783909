"""hf-hybrid's `Trainer`: the training accuracy in its logs, the recipes' optimizers, the wide branch's own
learning rate, the deep part learning to correct a fitted wide branch, and the embedding frozen for the first
epochs (`build_trainer` puts a run's together).
"""

import dataclasses
from pathlib import Path

import torch
from torch import nn
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import get_parameter_names
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .evaluation import BEST_MULTI_LABEL_METRIC, compute_metrics
from .recipes import NOTEBOOK_RECIPE
from .wide_fit import HELD_OUT_WIDE_LOGITS

# Written into every checkpoint: the digest of the papers its run learns from and is measured on (`papers_digest`).
PAPERS_RECORD = "papers_sha256.txt"


class HybridTrainer(Trainer):
    """A `Trainer` that also logs the accuracy of the training batches it saw since its last log,
    so that the history has train accuracy beside validation accuracy (as the notebook plotted).

    When the training papers have a `held_out_wide_logits` column, the model learns on the loss of the sum of
    its two parts' logits (the wide branch fixed), with each training paper's wide logits replaced by those held
    out: the deep part learns what the wide branch gets wrong on papers it has not seen. Evaluation then scores
    the sum as it is."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train_counts = torch.zeros(2, device=self.args.device)  # correct, seen
        self.corrects_wide_branch = (
            self.train_dataset is not None and HELD_OUT_WIDE_LOGITS in self.train_dataset.column_names
        )

    def _set_signature_columns_if_needed(self):
        # The Trainer keeps only the columns its model's forward takes; the held-out logits go to the loss.
        super()._set_signature_columns_if_needed()
        if HELD_OUT_WIDE_LOGITS not in self._signature_columns:
            self._signature_columns.append(HELD_OUT_WIDE_LOGITS)

    def get_train_dataloader(self):
        # BatchNorm cannot train on a batch of one paper, which a last incomplete batch can be: the training
        # loader drops it whenever there is a full batch to train on (evaluation keeps every paper).
        keep_last = self.args.dataloader_drop_last
        full_batch = self.args.train_batch_size * self.args.world_size
        self.args.dataloader_drop_last = keep_last or len(self.train_dataset) >= full_batch
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = keep_last

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.corrects_wide_branch:
            loss, outputs = self._loss_of_the_sum(model, dict(inputs))
        else:
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
        # Accuracy is a single-label model's: a multi-label one's labels are multi-hot rows.
        if model.training and "labels" in inputs and inputs["labels"].ndim == 1:
            labels = inputs["labels"]
            correct = (outputs.logits.detach().argmax(dim=-1) == labels).sum()
            self._train_counts += torch.stack([correct, torch.tensor(labels.numel(), device=correct.device)]).to(
                self._train_counts
            )
        return (loss, outputs) if return_outputs else loss

    def _loss_of_the_sum(self, model, inputs):
        """The model's loss on its logits, the sum of its two parts' (before any calibration temperature), with the
        wide branch's part replaced by `held_out_wide_logits` where the batch has them: (loss, outputs)."""
        held_out = inputs.pop(HELD_OUT_WIDE_LOGITS, None)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        core = self.accelerator.unwrap_model(model)
        logits = outputs.logits * core.config.calibration_temperature
        if held_out is not None:
            held_out = held_out.to(logits)
            # As the model's forward does: a single-label model adds the branch's log-probabilities.
            held_out = held_out if core.config.is_multi_label else held_out.log_softmax(dim=-1)
            logits = logits - outputs.wide_logits + held_out
        return core.label_loss(logits, labels), outputs

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model=None):
        if args.recipe == NOTEBOOK_RECIPE:
            return adam_with_l2(args.learning_rate, args.weight_decay)
        return Trainer.get_optimizer_cls_and_kwargs(args, model)

    def create_optimizer(self, model=None):
        """The `Trainer`'s optimizer, with the wide branch's weights in groups of their own at
        `--wide_learning_rate` (the scheduler then scales every group alike)."""
        optimizer = super().create_optimizer(model)
        wide = getattr(self.model if model is None else model, "wide", None)
        if wide is None:
            return optimizer
        wide_parameters = set(wide.parameters())
        for group in list(optimizer.param_groups):
            own = [p for p in group["params"] if p in wide_parameters]
            if own:
                group["params"] = [p for p in group["params"] if p not in wide_parameters]
                optimizer.add_param_group({**group, "params": own, "lr": self.args.wide_learning_rate})
        return optimizer

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The notebook's Adam decays every parameter (as L2). hf-hybrid's AdamW spares the embedding, the biases
        and the norms: decay would pull the vector of a word that a batch lacks towards zero at every step, so a
        rare word's vector would fade long before the word is learned."""
        if self.args.recipe == NOTEBOOK_RECIPE:
            return [name for name, _ in model.named_parameters()]
        return get_parameter_names(model, [nn.Embedding, nn.BatchNorm1d, nn.LayerNorm], ["bias"])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            correct, seen = self.accelerator.reduce(self._train_counts, reduction="sum").tolist()
            if seen:
                logs["train_accuracy"] = round(correct / seen, 4)
            self._train_counts.zero_()
        super().log(logs, start_time)


class FreezeEmbeddingCallback(TrainerCallback):
    """Keeps the word embedding at the vectors it started from for the first `epochs` epochs: no gradient reaches
    it, so the optimizer leaves it as it is."""

    def __init__(self, epochs: float):
        self.epochs = epochs

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        model.get_input_embeddings().weight.requires_grad_(state.epoch >= self.epochs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.get_input_embeddings().weight.requires_grad_(True)


class RecordPapersCallback(TrainerCallback):
    """Writes the digest of the run's papers into each checkpoint, so that a resume can check that it goes on with
    the same papers (`training.check_resumed_papers`)."""

    def __init__(self, digest: str):
        self.digest = digest

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (checkpoint / PAPERS_RECORD).write_text(self.digest + "\n")


def adam_with_l2(learning_rate: float, weight_decay: float):
    """The notebook recipe's optimizer, as the `Trainer`'s `optimizer_cls_and_kwargs`: Adam, which adds weight
    decay to the gradient (L2), unlike AdamW."""
    # fused: one kernel for all parameters, 4-9% of a CPU training step faster than foreach (measured)
    return torch.optim.Adam, {"lr": learning_rate, "weight_decay": weight_decay, "fused": True}


def build_trainer(
    model, tokenizer, tokenized, training_args, staging: Path, papers_digest: str | None = None
) -> HybridTrainer:
    """The `HybridTrainer` of a run: writing into `staging` checkpoints that record `papers_digest` (when given),
    early stopping, the embedding frozen as asked."""
    best = training_args.metric_for_best_model
    if model.config.is_multi_label and best == "accuracy":
        # A multi-label model has no accuracy of one label per paper: its epochs are compared by micro-F1.
        best = BEST_MULTI_LABEL_METRIC
    return HybridTrainer(
        model=model,
        # Our own push at the end sends only safe files; the Trainer's would also send its pickles.
        args=dataclasses.replace(training_args, push_to_hub=False, output_dir=str(staging), metric_for_best_model=best),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience),
            FreezeEmbeddingCallback(training_args.freeze_embedding_epochs),
            *([RecordPapersCallback(papers_digest)] if papers_digest else []),
        ],
    )
