"""ITRA in Hugging Face `Trainer`: `ITRATrainer` adds λ·Match(H1, H2) to the model's cross-entropy.

    pip install 'itra[hf]'
    trainer = ITRATrainer(model=model, args=TrainingArguments("out", per_device_train_batch_size=32),
                          train_dataset=train_set, lam=0.5)
    trainer.train()

A training step's loss is the paper's Eq. (6) (Eq. (4) with `conditional=False`),

    loss = CE(S1) + λ_t · Match(H1, H2),   λ_t = λ · min(1, t / W) at the t-th optimizer step,

W = `lam_warmup` steps, or by default ⌈`lam_warmup_ratio` · `max_steps`⌉ of the Trainer's run (`itra.warmup`, as
`itra train` computes it), where CE(S1) is the loss `Trainer` computes for S1 alone (the model's own cross-entropy, or label
smoothing, or `compute_loss_func`), and H1 (m, D), H2 (m, D) are the penultimate features of S1 and S2:
the input of the model's final classification layer (`find_classification_layer`, shared with
`itra.models.adapter.split_classifier`), read by a forward
pre-hook that exists only during the step, so the model is not changed. S2 goes through the model in a
pass of its own and is in no term but the match.

**Batch size.** `per_device_train_batch_size` = m is the CE batch, S1, as with plain `Trainer`. The
training dataloader draws 2m samples a step from a `PairedSampler`: its even rows are S1, one shuffled
pass over the dataset per epoch, its odd rows S2, an independent shuffle. So an epoch has as many steps
as plain `Trainer`'s with the same arguments, every sample is in the CE once per epoch, and a step
forwards 2m samples (budget the memory for that). Sharding, resume (`set_epoch` and skipped batches) and
DDP (`torchrun`, one process per GPU) act on these batches as `Trainer` does; each process matches its
own S1 against its own S2. Trainer's own sampler options (`train_sampling_strategy`) do not apply.

**Gradient accumulation.** The loss is a per-batch mean, and `Trainer` divides it by the number of
accumulated batches (`loss_is_scaled_for_ga = False`): k accumulated batches of m give the update of
mean_i [CE(S1_i) + λ_t · Match(S1_i, S2_i)], where the S1_i and S2_i together are exactly the S1 and S2
of one batch of k·m. With λ = 0 that is the update of one batch k times the size; with λ > 0 it is not,
since the MMD of the union of batches is not the mean of their MMDs. `num_items_in_batch` (Trainer's
item count for token-level losses) is not used: the match is a statistic of two whole batches, not a
sum over items, and a classification batch's CE is a mean over its samples, as for any model that
takes no loss kwargs.

**Columns.** `remove_unused_columns` (the default) keeps the model's inputs and the labels, which is
all ITRA needs: S2's labels make the match class-conditional. Every value of a collated training batch
must be a tensor with one row per sample. Evaluation is plain `Trainer`: `eval_loss` is the CE.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Trainer

from itra.checks import check_choice, check_labels, check_map_dataset, check_number, reads_labels
from itra.data.batches import epoch_generator
from itra.losses import ITRALoss
from itra.mmd import Bandwidth
from itra.models.adapter import find_classification_layer
from itra.pairing import DEFAULT_S2_STATE, S2_STATES
from itra.errors import BadValue
from itra.warmup import DEFAULT_RATIO, check_warmup, lam_at, warmup_steps

TERMS = ("ce", "match")  # logged as train_ce, train_match


@contextmanager
def captured_inputs(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The first positional input of each call of `layer` inside the block, in call order (a forward
    pre-hook, removed on exit)."""
    inputs: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    try:
        yield inputs
    finally:
        handle.remove()


def split_pairs(batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """S1 (the even rows) and S2 (the odd rows) of every tensor of a paired batch (2m, ...)."""
    size = len(batch["labels"])
    for name, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.shape[:1] != (size,):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise BadValue(f"Expected every value of a training batch to be a tensor with one row per sample "
                             f"({size}), but `{name}` is {shape}")
    return {name: value[0::2] for name, value in batch.items()}, {name: value[1::2] for name, value in batch.items()}


class PairedSampler(Sampler[int]):
    """Indices s1[0], s2[0], s1[1], s2[1], ... (2N of them) for batches that pair S1 with S2.

    s1 and s2 are independent shuffles of range(N), fixed by (seed, epoch) with the generators that
    `PairedLoader` uses (`epoch_generator` streams 1 and 2). Cut into batches of 2m, batch b has S1 =
    s1[bm : (b+1)m] in its even rows and S2 = s2[bm : (b+1)m] in its odd rows: over an epoch S1 is one
    pass over the data, and when m divides N the pairs are `PairedLoader(dataset, m, seed=seed)`'s. Any
    even-sized slice of the sequence that starts at an even position pairs the same way, so batches that
    are cut, sharded or accumulated stay pairs. `set_epoch` chooses the epoch (`Trainer` calls it).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2 * self.size

    def __iter__(self) -> Iterator[int]:
        first, second = (torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch, stream))
                         for stream in (1, 2))
        return iter(torch.stack((first, second), dim=1).flatten().tolist())  # (2N,) interleaved


class ITRATrainer(Trainer):
    """A `Trainer` whose training loss is CE(S1) + λ_t · Match(H1, H2) (see the module docstring).

    It takes `Trainer`'s arguments and these keywords.

    Args:
        lam: λ, the weight of the match.
        conditional: ITRA-c (Eq. (5): the match per class, the default) or plain ITRA (Eq. (3)).
        bandwidth, squared: the kernel bandwidth and MMD² instead of MMD, as `itra.ITRALoss` takes them.
        lam_warmup: λ rises linearly over this many optimizer steps (0: none), as `itra train --lam-warmup`;
            None (the default): over `lam_warmup_ratio` of the run's optimizer steps (the Trainer's `max_steps`).
        s2_state: what S2's forward pass may change of the model's state, as `itra train --s2-state`: "keep" (the
            default, `itra.pairing.S2_STATES`: with lam=0 the run is the plain CE of S1, bit for bit) or "update" (its
            dropout draws shift S1's later masks; running statistics, where the model has them).
        head_name: the model's final classification layer, when it is not found by name (`itra.models.adapter.HEAD_NAMES`).

    Training logs hold `train_ce` and `train_match` (means over the steps since the last log, like
    `loss`) and `lam`, the λ of the last step.

    Batches: each collated training batch is a dict of tensors with one row per sample (B, ...) and `labels` (B,);
    the model's output holds `loss` for S1 (or `compute_loss_func` computes it) and its head's input gives H1, H2.

    Raises:
        BadValue: `lam` not a finite number >= 0, a warm-up `itra.warmup.check_warmup` refuses, an unknown
            `s2_state`, no classification layer by that name, or a run on several GPUs through `nn.DataParallel`.

    Example:
        >>> import tempfile
        >>> import torch
        >>> from torch import nn
        >>> from transformers import PrinterCallback, TrainingArguments
        >>> from itra.integrations.transformers import ITRATrainer
        >>> class Model(nn.Module):  # any model that takes the batch's columns; its head is found by name
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body, self.classifier = nn.Linear(4, 8), nn.Linear(8, 3)
        ...     def forward(self, x, labels=None):
        ...         logits = self.classifier(self.body(x).relu())
        ...         return {"logits": logits} if labels is None else {
        ...             "loss": nn.functional.cross_entropy(logits, labels), "logits": logits}
        >>> train_set = [{"x": torch.randn(4), "labels": i % 3} for i in range(12)]
        >>> args = TrainingArguments(tempfile.mkdtemp(), per_device_train_batch_size=6, max_steps=2, use_cpu=True,
        ...                          report_to="none", save_strategy="no", disable_tqdm=True)
        >>> trainer = ITRATrainer(model=Model(), args=args, train_dataset=train_set, lam=0.5)
        >>> trainer.head_name, trainer.match
        ('classifier', ITRALoss(conditional=True, bandwidth='batch', num_classes=None, squared=False))
        >>> trainer.remove_callback(PrinterCallback)  # no log lines in this example
        >>> trainer.train().global_step
        2
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides it by the number of accumulated batches

    def __init__(self, *args: Any, lam: float = 0.5, conditional: bool = True, bandwidth: Bandwidth = "batch",
                 squared: bool = False, lam_warmup: int | None = None, lam_warmup_ratio: float = DEFAULT_RATIO,
                 s2_state: str = DEFAULT_S2_STATE, head_name: str | None = None, **kwargs: Any) -> None:
        check_number("lam", lam, lambda v: 0 <= v < math.inf, "a finite number >= 0")
        check_warmup(lam_warmup, lam_warmup_ratio)
        check_choice("s2_state", s2_state, S2_STATES)
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:
            raise BadValue(f"ITRATrainer reads features with a hook, which nn.DataParallel's replicas share; "
                             f"run one process per GPU instead: torchrun --nproc-per-node {self.args.n_gpu} ...")
        self.model_accepts_loss_kwargs = False  # the model gets no num_items_in_batch; older Trainers then divide by GA
        self.lam = float(lam)
        self.lam_warmup, self.lam_warmup_ratio = lam_warmup, lam_warmup_ratio
        self.s2_state = s2_state
        self.head_name = find_classification_layer(self.model, head_name)
        num_classes = getattr(getattr(self.model, "config", None), "num_labels", None)
        self.match = ITRALoss(conditional, bandwidth, num_classes, validate_args=False, squared=squared)
        self._term_sums = torch.zeros(len(TERMS), device=self.args.device)  # since the last log, per step
        self._steps_since_log = 0.0

    def lam_at(self, step: int) -> float:
        """λ at the `step`-th optimizer step (1, 2, ...) of this run (`itra.warmup.lam_at`)."""
        return lam_at(step, self.lam, warmup_steps(self.lam_warmup, self.lam_warmup_ratio, self.state.max_steps))

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> PairedSampler:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return PairedSampler(len(dataset), seed)  # type: ignore[arg-type]

    def get_train_dataloader(self) -> DataLoader:
        """Trainer's training dataloader, its batches 2m paired samples from a `PairedSampler`, m the CE batch."""
        if self.train_dataset is None:
            raise BadValue("Trainer: training requires a train_dataset.")
        check_map_dataset("train_dataset", self.train_dataset, "ITRATrainer")
        if len(self.train_dataset) == 0:  # type: ignore[arg-type]
            raise BadValue("ITRATrainer: the train_dataset is empty; give it the training samples")
        self._check_labels()
        if self.lam > 0 and self._train_batch_size >= len(self.train_dataset):  # type: ignore[arg-type]
            raise BadValue(f"per_device_train_batch_size {self._train_batch_size} covers the whole train_dataset of "
                             f"{len(self.train_dataset)} samples, so S2 holds the same samples as S1 and the match "  # type: ignore[arg-type]
                             "is 0: use a smaller batch (or lam=0)")
        return self._get_dataloader(dataset=self.train_dataset, description="Training",
                                    batch_size=2 * self._train_batch_size, sampler_fn=self._get_train_sampler,
                                    is_training=True)

    def _check_labels(self) -> None:
        """Labels outside [0, K) of a Hugging Face `datasets.Dataset` (its `labels` column), K the head's outputs, as
        one line before training (a torch dataset's labels are not read ahead)."""
        if "labels" not in getattr(self.train_dataset, "column_names", ()):
            return
        labels = torch.as_tensor(self.train_dataset["labels"])  # type: ignore[index]
        classes = self._classes()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise BadValue(f"ITRATrainer: the train_dataset's labels run from {int(labels.min())} to "
                             f"{int(labels.max())}, but the model's head has {classes} outputs (num_labels): labels "
                             f"must be 0..{classes - 1}")

    def _classes(self) -> int:
        """K, the outputs of the model's classification layer."""
        return self.accelerator.unwrap_model(self.model).get_submodule(self.head_name).out_features

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """CE(S1) + λ_t · Match(H1, H2) of a paired training batch; outputs are S1's. A model in eval mode
        gets Trainer's own loss of the whole batch. `num_items_in_batch` is not used (module docstring)."""
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if "labels" not in inputs:
            raise BadValue(f"ITRATrainer needs the class labels of each training batch under `labels`, but the "
                             f"batch holds only {', '.join(inputs)}")
        labels = inputs["labels"]  # of S1 and S2, (2m,): what any dataset's items collate to
        check_labels("labels", labels, labels, self._classes(), reads_labels(self.state.global_step, self.args.device))
        first, second = split_pairs(inputs)
        y1, y2 = first["labels"], second.pop("labels")
        head = self.accelerator.unwrap_model(model).get_submodule(self.head_name)
        with captured_inputs(head) as features:
            ce, outputs = super().compute_loss(model, first, return_outputs=True)
            with S2_STATES[self.s2_state].forward(model, self.args.device):  # what S2's pass may change of the model
                model(**second)
        h1, h2 = self._penultimate(features)  # (m, D) each
        match = self.match(h1, y1, h2, y2)
        loss = ce + self.lam_at(self.state.global_step + 1) * match
        accumulated = self.current_gradient_accumulation_steps
        self._term_sums += torch.stack((ce.detach().float(), match.detach().float())) / accumulated
        self._steps_since_log += 1 / accumulated
        return (loss, outputs) if return_outputs else loss

    def _penultimate(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """H1 and H2 from the inputs the classification layer saw in the two passes of a step."""
        if len(features) != 2:
            raise BadValue(f"Expected `{self.head_name}` to run once a forward pass, but it ran {len(features)} "
                             "times in the two passes of a step: name another layer with head_name=")
        if features[0].ndim != 2:
            raise BadValue(f"Expected the input of `{self.head_name}` to be features (batch, dim), but got shape "
                             f"{tuple(features[0].shape)}: name the classification layer with head_name=")
        return features[0], features[1]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Trainer's log; a training log (one with `loss`) also gets the mean terms since the last one and λ."""
        if "loss" in logs and self._steps_since_log > 0:
            means = self.accelerator.reduce(self._term_sums, reduction="mean") / self._steps_since_log
            logs.update({f"train_{name}": value for name, value in zip(TERMS, means.tolist())})
            logs["lam"] = self.lam_at(self.state.global_step)
            self._term_sums.zero_()
            self._steps_since_log = 0.0
        super().log(logs, *args, **kwargs)
