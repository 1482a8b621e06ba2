"""ITRA in PyTorch Lightning: `ITRAModule` trains CE(S1) + λ_t · Match(H1, H2), `PairedDataModule` draws S1 and S2.

    pip install "itra[lightning]"
    module = ITRAModule(build_image_model("cnn", num_classes=10, in_channels=1), lam=0.5)
    data = PairedDataModule(train_set, batch_size=128, seed=0, val_set=val_set, test_set=test_set)
    trainer = lightning.pytorch.Trainer(max_epochs=10)
    trainer.fit(module, data)
    trainer.test(module, data)          # test_accuracy (%), test_cross_entropy, test_ece

A training step's loss is the paper's Eq. (6) (Eq. (4) with `conditional=False`), computed by itra's own
`Objective`, so a step is `itra.train.train_step`'s:

    loss = CE(S1) + λ_t · Match(H1, H2),   λ_t = λ · min(1, t / W) at the t-th optimizer step,

W = `lam_warmup` steps, or by default ⌈`lam_warmup_ratio` · T⌉ of the run's T = `trainer.estimated_stepping_batches`
optimizer steps (`itra.warmup`, as `itra train` computes it), where H1 (m, D) and H2 (m', D) are the extractor's features of S1 and of S2, an independent batch that
goes through the extractor in a pass of its own and is in no term but the match. With `lam=0` the loss is
the plain CE of S1: no S2 is drawn or forwarded, and S1's batches are the same as with pairing.

**Batches.** `PairedDataModule` gives `PairedLoader`'s pairs: S1 one shuffled pass over the training set
per epoch, S2 an independent stream, both fixed by (seed, epoch), where the epoch is Lightning's
(`PairedBatches`). A checkpointed run resumed with `trainer.fit(..., ckpt_path=...)` goes on with the batches
an uninterrupted run would have drawn, from an epoch's end or from the middle of one.

**Many devices.** Under `Trainer(devices=N, strategy="ddp")` each of the N processes draws its own slice
of every global batch, `PairedLoader(rank=, world_size=)`: a step has a global S1 of N·m samples and a
global S2 of N·m', the last incomplete global batch of an epoch is dropped, and each rank matches its own
S1 slice against its own S2 slice, itra's "local" form (`itra train --match-ranks local`). Lightning adds no
`DistributedSampler` to these batches (it shards only `DataLoader`s); the validation and test sets are
plain `DataLoader`s, which it does shard, repeating up to N - 1 samples to even the shards, so evaluate on
one device for the exact metrics. The logged training terms are rank 0's.
"""
from __future__ import annotations

import math
import warnings
from functools import partial
from itertools import islice
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from itra.errors import BadValue, MissingPackage

try:
    from lightning.pytorch import LightningDataModule, LightningModule
except ModuleNotFoundError as error:
    if (error.name or "").partition(".")[0] != "lightning":
        raise
    raise MissingPackage('itra.integrations.lightning needs PyTorch Lightning: pip install "itra[lightning]"',
                              name="lightning") from None

from itra.checks import check_batch, check_map_dataset, check_number, reads_labels
from itra.config import TrainConfig
from itra.data.paired import PairedLoader
from itra.losses import ITRALoss
from itra.data.batches import Batch
from itra.objective import Objective
from itra.metrics import metric_sums, metrics_from_sums
from itra.mmd import Bandwidth
from itra.models import Classifier
from itra.models.classifier import check_classifier
from itra.optimizers import cosine_schedule, sgd
from itra.pairing import DEFAULT_S2_STATE
from itra.warmup import DEFAULT_RATIO, check_warmup, lam_at, warmup_steps

OptimizerFactory = Callable[[Iterator[nn.Parameter]], Any]  # parameters -> what `configure_optimizers` returns


class PairedBatches:
    """`PairedLoader`'s batches as Lightning's training loop takes them: pairs `(S1, S2)`, S2 None when the
    loader does not pair (`paired=False`).

    The epoch is Lightning's: at the start of every epoch, a resumed one too, its fit loop calls
    `set_epoch(e)` on the `sampler` of each training dataloader, and `sampler` is this object, so epoch e's
    batches are the loader's for (seed, e). The loader is read at the first batch, after `set_epoch`
    (iterating is lazy), and a pass that runs to its end moves on to the next epoch, so outside Lightning it
    iterates like `PairedLoader`. `state_dict` is the epoch and how many of its batches were drawn; Lightning
    keeps it in every checkpoint (its protocol for resumable loaders), so a run resumed mid-epoch goes on with
    the next batch (the drawn ones are drawn again and skipped).
    """

    def __init__(self, loader: PairedLoader) -> None:
        self.loader = loader
        self.epoch = loader.epoch
        self.drawn = 0  # batches of `epoch` yielded

    @property
    def sampler(self) -> "PairedBatches":
        """What Lightning calls `set_epoch` on (a `DataLoader`'s sampler)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch`; the epoch it is in already keeps its place."""
        if epoch != self.epoch:
            self.epoch, self.drawn = epoch, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        epoch, skip = self.epoch, self.drawn
        self.loader.set_epoch(epoch)
        for batch in islice(iter(self.loader), skip, None):
            self.drawn += 1
            yield batch if self.loader.paired else (batch, None)
        self.epoch, self.drawn = epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.drawn = state["epoch"], state["drawn"]


class PairedDataModule(LightningDataModule):
    """Training pairs `(S1, S2)` from `PairedLoader` (`PairedBatches`), validation and test batches in order.

    Args:
        train_set, val_set, test_set: map-style datasets of `(*inputs, label)` items; without a val (test) set
            there is no validation loop (`trainer.test` is an error).
        batch_size: m, the size of S1 (and of validation and test batches); second_batch_size: m' of S2 (default m).
        seed: fixes S1 and S2 of every epoch. num_workers, collate_fn, pin_memory: as `PairedLoader` takes them.

    Raises:
        BadValue: at construction, what `PairedLoader` refuses of these arguments, or a val or test set that is not a
            dataset.

    Whether S2 is drawn is the fitted module's `draws_second_batch` (ITRAModule: lam > 0); a LightningModule
    without that attribute gets pairs. Under DDP each rank draws its slice (the module docstring).
    """

    def __init__(self, train_set: Dataset, batch_size: int, second_batch_size: int | None = None, seed: int = 0,
                 val_set: Dataset | None = None, test_set: Dataset | None = None, num_workers: int = 0,
                 collate_fn: Callable[[list[Any]], Any] | None = None, pin_memory: bool = False) -> None:
        super().__init__()
        check_map_dataset("train_set", train_set, "PairedDataModule")
        with warnings.catch_warnings():  # its checks of every argument it takes, now rather than at the first epoch
            warnings.simplefilter("ignore")  # pin_memory without a GPU: said once, by `train_dataloader`'s loader
            PairedLoader(train_set, batch_size, second_batch_size, seed, num_workers=num_workers, collate_fn=collate_fn,
                         pin_memory=pin_memory)
        for name, dataset in (("val_set", val_set), ("test_set", test_set)):
            if dataset is not None and not (hasattr(dataset, "__getitem__") or hasattr(dataset, "__iter__")):
                raise BadValue(f"Expected `{name}` to be a dataset of (*inputs, label) items, or None, but got "
                               f"{type(dataset).__name__}")
        self.train_set = train_set
        self.batch_size, self.second_batch_size, self.seed = batch_size, second_batch_size, seed
        self.num_workers, self.collate_fn, self.pin_memory = num_workers, collate_fn, pin_memory
        self.train_batches: PairedBatches | None = None  # the last `train_dataloader()`
        self._resumed: dict[str, int] | None = None  # a checkpoint's place of the training batches, until used
        # Lightning runs a validation (test) loop where the datamodule has its dataloader method, as `from_datasets`
        if val_set is not None:
            self.val_dataloader = partial(self._in_order, val_set)
        if test_set is not None:
            self.test_dataloader = partial(self._in_order, test_set)

    def train_dataloader(self) -> PairedBatches:
        trainer = self.trainer
        module = None if trainer is None else trainer.lightning_module
        rank, world_size = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        self.train_batches = PairedBatches(PairedLoader(
            self.train_set, self.batch_size, self.second_batch_size, self.seed,
            paired=getattr(module, "draws_second_batch", True), num_workers=self.num_workers,
            collate_fn=self.collate_fn, pin_memory=self.pin_memory, rank=rank, world_size=world_size))
        if self._resumed:
            self.train_batches.load_state_dict(self._resumed)
            self._resumed = None
        return self.train_batches

    def state_dict(self) -> dict[str, int]:
        """The training batches' place (`PairedBatches.state_dict`), kept here as well as by Lightning's loop: Lightning
        2.6 drops a loader's own state on resume when `configure_optimizers` reads `trainer.estimated_stepping_batches`,
        as ITRAModule's default does (Lightning issue #20550), while it restores a datamodule before that."""
        return {} if self.train_batches is None else self.train_batches.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.train_batches is None:
            self._resumed = state  # for the next `train_dataloader()`
        elif state:
            self.train_batches.load_state_dict(state)  # strategies that restore after set-up

    def _in_order(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=self.collate_fn, pin_memory=self.pin_memory)


class ITRAModule(LightningModule):
    """A `Classifier` (extractor E giving h (B, D), linear head C) trained on CE(S1) + λ_t · Match(H1, H2).

    Any model works once split as `Classifier(extractor, head)`, `head` an `nn.Linear` on the features.

    Args:
        model: the classifier; `module.model` is it, `module(*inputs)` its logits (B, K).
        lam: λ, the weight of the match; 0 is plain CE (no S2).
        conditional: ITRA-c (Eq. (5): the match per class, the default) or plain ITRA (Eq. (3)).
        bandwidth, squared: the kernel bandwidth and MMD² instead of MMD, as `itra.ITRALoss` takes them
            (the default, "batch", is `ITRALoss()`'s).
        lam_warmup: λ rises linearly over this many optimizer steps (0: none), as `itra train --lam-warmup`;
            None (the default): over `lam_warmup_ratio` of the run's optimizer steps (`estimated_stepping_batches`).
        s2_state: what S2's forward pass may change of the model's state, as `itra train --s2-state`: "keep" (the
            default: nothing; with lam=0 the run is plain CE) or "update" (batch-norm running statistics, the dropout
            stream) (`itra.pairing.S2_STATES`).
        optimizer: `optimizer(parameters)` returns what `configure_optimizers` may (an optimizer, or a dict
            with a scheduler). Default: `itra train`'s, SGD with Nesterov momentum 0.9, lr 0.05, weight decay
            5e-4 and a cosine schedule to 0 over the run's optimizer steps (`trainer.estimated_stepping_batches`),
            stepped every step.

    Training logs, every logged step: `train_ce`, `train_match` (with lam > 0), `train_loss` and `lam`, the
    step's λ_t. Validation and test log `val_*` / `test_*`: `accuracy` (%), `cross_entropy` and `ece` (15 bins)
    of the whole set, from `itra.metrics.metric_sums` summed over batches and ranks, as `itra train` reports them.

    Batches: `training_step` takes a pair `((*x1, y1), (*x2, y2))` from `PairedDataModule` (S1 alone with lam=0):
    inputs (B, ...) and labels (B,); `module(*inputs)` gives the logits (B, K).

    Raises:
        BadValue: `model` not a `Classifier` with a linear head, `lam` not a finite number >= 0, a warm-up
            `itra.warmup.check_warmup` refuses, an unknown `bandwidth` or `s2_state`, `conditional` or `squared` not
            a bool; in a step, a batch that is not `(*inputs, labels)` of tensors with class indices in [0, K)
            (`itra.checks.check_batch`; the range at a pass's first batch, or at every one on the CPU).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> from lightning.pytorch import Trainer
        >>> from itra.integrations.lightning import ITRAModule, PairedDataModule
        >>> from itra.models.classifier import Classifier
        >>> module = ITRAModule(Classifier(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 3)), lam=0.5)
        >>> module(torch.randn(2, 4)).shape  # logits (B, K)
        torch.Size([2, 3])
        >>> data = PairedDataModule(TensorDataset(torch.randn(12, 4), torch.arange(12) % 3), batch_size=6, seed=0)
        >>> trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(module, data)
        >>> trainer.global_step  # 12 samples in S1 batches of 6, each with an S2 of 6
        2
    """

    def __init__(self, model: Classifier, lam: float = 0.5, conditional: bool = True, bandwidth: Bandwidth = "batch",
                 squared: bool = False, lam_warmup: int | None = None, lam_warmup_ratio: float = DEFAULT_RATIO,
                 s2_state: str = DEFAULT_S2_STATE, optimizer: OptimizerFactory | None = None) -> None:
        check_number("lam", lam, lambda v: 0 <= v < math.inf, "a finite number >= 0")
        check_warmup(lam_warmup, lam_warmup_ratio)
        check_classifier("model", model)
        if optimizer is not None and not callable(optimizer):
            raise BadValue(f"Expected `optimizer` to be a function of the parameters (e.g. partial(torch.optim.AdamW, "
                           f"lr=1e-3)), or None, but got {optimizer!r}")
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer"])
        match = ITRALoss(conditional, bandwidth, model.head.out_features, validate_args=False, squared=squared)
        self.objective = Objective(model, match if lam > 0 else None, float(lam), term="match", s2_state=s2_state)
        self.lam = float(lam)
        self.lam_warmup, self.lam_warmup_ratio = lam_warmup, lam_warmup_ratio
        self._warmup = 0  # W of the run being fitted (`on_train_start`)
        self.optimizer_factory = optimizer
        self._sums: torch.Tensor | None = None  # metric sums of the evaluation epoch so far

    @property
    def model(self) -> Classifier:
        return self.objective.model

    @property
    def draws_second_batch(self) -> bool:
        """Whether training steps take an S2 (lam > 0); `PairedDataModule` reads it."""
        return self.objective.draws_second_batch

    def lam_at(self, step: int) -> float:
        """λ at the `step`-th optimizer step (1, 2, ...) of the run being fitted (`itra.warmup.lam_at`)."""
        return lam_at(step, self.lam, self._warmup)

    def on_train_start(self) -> None:
        self._warmup = warmup_steps(self.lam_warmup, self.lam_warmup_ratio, self.trainer.estimated_stepping_batches)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs)

    def training_step(self, batch: tuple[Batch, Batch | None], batch_idx: int) -> torch.Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], (tuple, list))):
            raise BadValue(f"ITRAModule trains on pairs (S1, S2) of batches (*inputs, labels), S2 None with lam=0, "
                             f"but got a {type(batch).__name__}: draw them with PairedDataModule or PairedBatches")
        first, second = batch
        for name, part in (("S1", first), ("S2", second)):
            if part is not None:
                check_batch(name, part, self.model.head.out_features, reads_labels(batch_idx, self.device))
        self.objective.lam = self.lam_at(self.global_step + 1)
        terms = self.objective(first, second)
        size = len(first[-1])
        self.log_dict({f"train_{name}": value.detach() for name, value in terms.items()}, batch_size=size)
        self.log("lam", self.objective.lam, batch_size=size)
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is not None:
            return self.optimizer_factory(self.parameters())
        defaults = TrainConfig()
        optimizer = sgd(self.parameters(), defaults.lr, defaults.momentum, defaults.weight_decay)
        cosine = cosine_schedule(optimizer, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._add_sums("a validation batch", batch, batch_idx)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._add_sums("a test batch", batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        self._sums = None

    def on_test_epoch_start(self) -> None:
        self._sums = None

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val_")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test_")

    def _add_sums(self, name: str, batch: Batch, batch_idx: int) -> None:
        check_batch(name, batch, self.model.head.out_features, reads_labels(batch_idx, self.device))
        *inputs, labels = batch
        sums = metric_sums(self(*inputs), labels)
        self._sums = sums if self._sums is None else self._sums + sums

    def _log_metrics(self, prefix: str) -> None:
        """Log the metrics of the whole evaluated set: this epoch's metric sums, summed over ranks."""
        sums = self.trainer.strategy.reduce(self._sums.to(self.device), reduce_op="sum").cpu()
        self.log_dict({f"{prefix}{name}": value for name, value in metrics_from_sums(sums).items()})
