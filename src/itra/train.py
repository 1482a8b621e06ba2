"""One training loop for every method: CE, label smoothing, Center loss, ITRA and ITRA-c.

    itra train --dataset fashion-mnist --model cnn --method itra-c --lam 0.6 --epochs 15 --seed 0 --out runs/
    itra train --resume runs/fashion-mnist-cnn-itra-c-lam0.6-bs128-e15-seed0

A method is a `Method` module that adds its term to the cross-entropy of S1; ITRA's term is computed
between the features of S1 and of an independent S2 (Eq. (4) and (6)); S2 is never in the CE.
A run directory holds `config.json`, `metrics.jsonl` (one line per epoch), `checkpoint.pt` (written
atomically after every epoch) and, once finished, `summary.json`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm import tqdm

from itra.data import Splits
from itra.data.paired import Batch, PairedLoader, epoch_generator
from itra.losses import CenterLoss, ITRALoss
from itra.data.label_noise import with_label_noise
from itra.metrics import classification_metrics, compactness
from itra.models import Classifier

METHODS = ("ce", "lsr", "center", "itra", "itra-c")
OPTIMIZERS = ("sgd", "adamw")


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help (the CLI maps fields to flags one to one)."""
    return dataclasses.field(default=default, metadata={"help": help})
SECOND_BATCH_METHODS = ("itra", "itra-c")  # methods that draw S2
METHOD_FIELDS = {  # the config fields each method reads beyond the common ones
    "ce": (),
    "lsr": ("smoothing",),
    "center": ("lam", "center_alpha"),
    "itra": ("lam", "bandwidth", "second_batch_size"),
    "itra-c": ("lam", "bandwidth", "second_batch_size"),
}
ALL_METHOD_FIELDS = {name for names in METHOD_FIELDS.values() for name in names}


@dataclass
class TrainConfig:
    """Everything that defines a run; `config.json` in the run directory is this, resolved."""

    dataset: str = option("fashion-mnist", "dataset: fashion-mnist, digits, kmnist, cifar10, cifar100, stl10, imagenet; "
                          "text: wordnet, ag-news, amazon-full, yahoo, yelp-full")
    model: str = option("cnn", "images: cnn, resnet18, resnet50, resnet101, vgg13, mobilenetv2; text: minilm (offline), "
                        "a Hugging Face encoder name (bert-base-uncased, ...) or its local directory")
    method: str = option("itra-c", f"training method: {', '.join(METHODS)}")
    lam: float = option(0.6, "weight lambda of the method's extra term (center, itra, itra-c)")
    smoothing: float = option(0.1, "label smoothing epsilon (lsr)")
    center_alpha: float = option(0.5, "centre update rate alpha (center)")
    bandwidth: str = option("class", 'ITRA kernel bandwidth: "class" (median per class), "batch" or a number')
    epochs: int = option(15, "training epochs")
    batch_size: int = option(128, "size of mini-batch S1")
    second_batch_size: Optional[int] = option(None, "size of mini-batch S2 (itra, itra-c); default: batch size")
    optimizer: str = option("sgd", "sgd (Nesterov momentum) or adamw (the usual choice to fine-tune a text encoder)")
    lr: float = option(0.05, "initial learning rate (cosine schedule per step)")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "weight decay")
    seed: int = option(0, "seed of the model's initialisation, the batch order and augmentation")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    data_dir: Optional[str] = option(None, "dataset directory; default: the dataset's standard location")
    train_subset: Optional[int] = option(None, "train on a fixed random subset of this size (smoke runs)")
    test_subset: Optional[int] = option(None, "evaluate on a fixed random subset of this size (smoke runs)")
    max_length: int = option(128, "text: tokens per sample, longer texts are truncated")
    label_noise: float = option(0.0, "fraction of training labels flipped to another class (fixed by the seed)")
    compactness_every: int = option(50, "log compactness every this many steps (0: never)")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Expected `method` in {', '.join(METHODS)}, but got {self.method!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected `{name}` to be an integer larger than 0, but got {getattr(self, name)}")
        if self.lam < 0:
            raise ValueError(f"Expected `lam` >= 0, but got {self.lam}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"Expected `smoothing` in [0, 1), but got {self.smoothing}")
        if not 0 <= self.label_noise <= 1:
            raise ValueError(f"Expected `label_noise` in [0, 1], but got {self.label_noise}")
        if self.compactness_every < 0:
            raise ValueError(f"Expected `compactness_every` >= 0, but got {self.compactness_every}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Expected `optimizer` in {', '.join(OPTIMIZERS)}, but got {self.optimizer!r}")
        if self.max_length < 2:
            raise ValueError(f"Expected `max_length` >= 2 (a text needs its special tokens), but got {self.max_length}")
        if self.lr <= 0:
            raise ValueError(f"Expected `lr` > 0, but got {self.lr}")
        parse_bandwidth(self.bandwidth)
        # A field the method does not read goes back to its default, so that equal runs have equal
        # configs (`--method ce --lam 0.3` is the same run as `--method ce`).
        used = METHOD_FIELDS[self.method]
        for field in dataclasses.fields(self):
            if field.name in ALL_METHOD_FIELDS and field.name not in used:
                setattr(self, field.name, field.default)

    @property
    def name(self) -> str:
        """The run directory's name: what differs between the runs of a study."""
        term = {"ce": "", "lsr": f"-eps{self.smoothing:g}"}.get(self.method, f"-lam{self.lam:g}")
        second = "" if self.second_batch_size is None else f"-bs2{self.second_batch_size}"
        subset = "" if self.train_subset is None else f"-n{self.train_subset}"
        noise = f"-noise{self.label_noise:g}" if self.label_noise else ""
        model = Path(self.model).name  # a Hub name or a local directory: its last part
        return f"{self.dataset}-{model}-{self.method}{term}-bs{self.batch_size}{second}-e{self.epochs}{subset}{noise}-seed{self.seed}"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def parse_bandwidth(value: str) -> str | float:
    if value in ("class", "batch"):
        return value
    try:
        sigma = float(value)
    except ValueError:
        raise ValueError(f'Expected `bandwidth` to be "class", "batch" or a number > 0, but got {value!r}') from None
    if not sigma > 0:
        raise ValueError(f'Expected `bandwidth` to be "class", "batch" or a number > 0, but got {value!r}')
    return sigma


class Method(nn.Module):
    """The loss of one training step: CE on S1 (with label smoothing for lsr) plus lam * the method's term.

    `regularizer` is None (ce, lsr), a `CenterLoss` (center) or an `ITRALoss` (itra, itra-c); its
    state (the centres) is saved with the checkpoint.
    """

    def __init__(self, config: TrainConfig, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.lam = config.lam
        self.smoothing = config.smoothing if config.method == "lsr" else 0.0
        self.needs_second_batch = config.method in SECOND_BATCH_METHODS
        self.regularizer: nn.Module | None = None
        if config.method == "center":
            self.regularizer = CenterLoss(num_classes, feature_dim, config.center_alpha)
        elif self.needs_second_batch:
            bandwidth = parse_bandwidth(config.bandwidth)
            self.regularizer = ITRALoss(config.method == "itra-c", bandwidth, num_classes)

    def forward(
        self, logits: torch.Tensor, y1: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor | None, y2: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Loss terms of one step; "loss" is their weighted sum. logits (B, K), h1 (B, D), h2 (B2, D)."""
        terms = {"ce": F.cross_entropy(logits, y1, label_smoothing=self.smoothing)}
        if isinstance(self.regularizer, CenterLoss):
            terms["center"] = self.regularizer(h1, y1)
        elif isinstance(self.regularizer, ITRALoss):
            terms["match"] = self.regularizer(h1, y1, h2, y2)
        extra = [value for name, value in terms.items() if name != "ce"]  # at most one term
        terms["loss"] = terms["ce"] + self.lam * extra[0] if extra else terms["ce"]
        return terms


def train_step(
    model: Classifier, method: Method, optimizer: torch.optim.Optimizer, first: Batch, second: Batch | None
) -> dict[str, float]:
    """One SGD step on batch S1 (and S2 for ITRA); batches are on the model's device. Returns the terms."""
    *inputs1, y1 = first
    h1 = model.extractor(*inputs1)  # (B, D)
    logits = model.head(h1)  # (B, K)
    h2 = y2 = None
    if method.needs_second_batch:
        assert second is not None
        *inputs2, y2 = second
        h2 = model.extractor(*inputs2)  # a separate pass: S2 does not touch S1's batch-norm statistics
    terms = method(logits, y1, h1, h2, y2)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return {name: value.item() for name, value in terms.items()}


def ordered_batches(dataset: Dataset, batch_size: int) -> Iterator[Batch]:
    """The dataset in order, in batches of tuples `(*inputs, labels)`."""
    if isinstance(dataset, TensorDataset):
        for start in range(0, len(dataset), batch_size):
            yield tuple(tensor[start : start + batch_size] for tensor in dataset.tensors)
        return
    yield from torch.utils.data.DataLoader(dataset, batch_size, shuffle=False)


@torch.no_grad()
def predict(model: Classifier, dataset: Dataset, device: torch.device, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, D), logits (N, K) and labels (N,) of a whole dataset, in eval mode, on the CPU."""
    model.eval()
    features, logits, labels = [], [], []
    for *inputs, y in ordered_batches(dataset, batch_size):
        h = model.extractor(*(x.to(device) for x in inputs))
        features.append(h.cpu())
        logits.append(model.head(h).cpu())
        labels.append(y)
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Expected a CUDA device for --device {name}, but torch.cuda.is_available() is False")
    return device


def compactness_probe(dataset: Dataset, generator: torch.Generator, size: int = 256) -> tuple[Batch, Batch]:
    """Two fixed, disjoint random training batches on which compactness is followed during training."""
    size = min(size, len(dataset) // 2)  # type: ignore[arg-type]
    order = torch.randperm(len(dataset), generator=generator)[: 2 * size]  # type: ignore[arg-type]
    first, second = ordered_batches(subset_by_index(dataset, order), size)  # exactly two batches
    return first, second


@torch.no_grad()
def probe_compactness(model: Classifier, probe: tuple[Batch, Batch], device: torch.device) -> float:
    """`metrics.compactness` of the features of the two probe batches, in eval mode; restores train mode."""
    model.eval()
    (*inputs1, y1), (*inputs2, y2) = probe
    h1 = model.extractor(*(x.to(device) for x in inputs1))
    h2 = model.extractor(*(x.to(device) for x in inputs2))
    model.train()
    return compactness(h1, y1.to(device), h2, y2.to(device))


def subset_by_index(dataset: Dataset, index: torch.Tensor) -> Dataset:
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[index] for tensor in dataset.tensors))
    return torch.utils.data.Subset(dataset, index.tolist())


def subset(dataset: Dataset, size: int | None, seed: int = 0) -> Dataset:
    """A fixed random subset (the same for every run seed, so all methods see the same data)."""
    if size is None or size >= len(dataset):  # type: ignore[arg-type]
        return dataset
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]  # type: ignore[arg-type]
    return subset_by_index(dataset, index)


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: a kill never leaves half a checkpoint."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def write_json(path: Path, values: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(values, indent=2) + "\n")
    os.replace(temporary, path)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build(config: TrainConfig, splits: Splits, train_size: int, model: Classifier, device: torch.device):
    """Method, optimiser (SGD with Nesterov momentum, or AdamW) and per-step cosine schedule for a model trained on
    `train_size` samples."""
    method = Method(config, splits.num_classes, model.feature_dim).to(device)
    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
        )
    steps_per_epoch = math.ceil(train_size / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    return method, optimizer, schedule


def train(
    config: TrainConfig, splits: Splits, model: Classifier, run_dir: Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train `model` under `config`, writing the run directory; returns the summary.

    With `resume`, continue from `run_dir/checkpoint.pt`: model, optimiser, schedule, the method's state
    and the RNG state are restored, and every epoch's batches are rebuilt from (seed, epoch), so on the
    CPU a resumed run ends with exactly the metrics of an uninterrupted one.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)
    train_set = with_label_noise(subset(splits.train, config.train_subset), splits.num_classes, config.label_noise,
                                 epoch_generator(config.seed, 0, stream=4))
    method, optimizer, schedule = build(config, splits, len(train_set), model, device)  # type: ignore[arg-type]
    test_set = subset(splits.test, config.test_subset)
    probe = compactness_probe(train_set, epoch_generator(config.seed, 0, stream=5))
    loader = PairedLoader(train_set, config.batch_size, config.second_batch_size, config.seed, paired=method.needs_second_batch)
    augment = epoch_generator(config.seed, 0, stream=3)

    start_epoch, history, elapsed = 0, [], 0.0
    checkpoint_path = run_dir / "checkpoint.pt"
    if resume:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"{checkpoint_path}: no checkpoint to resume from")
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        augment.set_state(state["augment_rng"])
        start_epoch, elapsed = state["epoch"], state["elapsed_s"]
        history = [row for row in read_metrics(run_dir) if row["epoch"] <= start_epoch]
    write_json(run_dir / "config.json", dataclasses.asdict(config))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        model.train()
        method.train()
        loader.set_epoch(epoch)
        sums: dict[str, float] = {}
        compactness_log: list[list[float]] = []
        bar = tqdm(loader, total=len(loader), desc=f"{config.name} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        for step, pair in enumerate(bar, start=1):
            first, second = pair if method.needs_second_batch else (pair, None)
            first = tuple(t.to(device, non_blocking=True) for t in first)
            second = None if second is None else tuple(t.to(device, non_blocking=True) for t in second)
            if splits.train_transform is not None:
                first = (splits.train_transform(first[0], augment), *first[1:])
                second = None if second is None else (splits.train_transform(second[0], augment), *second[1:])
            terms = train_step(model, method, optimizer, first, second)
            schedule.step()
            if not all(math.isfinite(v) for v in terms.values()):
                raise FloatingPointError(f"{config.name}: non-finite loss at epoch {epoch + 1}, step {step}: {terms}")
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            global_step = epoch * len(loader) + step
            if config.compactness_every and global_step % config.compactness_every == 0:
                compactness_log.append([global_step, probe_compactness(model, probe, device)])
            if step % 20 == 0 or step == len(loader):
                bar.set_postfix({name: f"{value / step:.4f}" for name, value in sums.items()})
        _, logits, labels = predict(model, test_set, device)
        elapsed += time.perf_counter() - started
        row = {"epoch": epoch + 1, **{f"train_{k}": v / len(loader) for k, v in sums.items()},
               **{f"test_{k}": v for k, v in classification_metrics(logits, labels).items()},
               "lr": schedule.get_last_lr()[0], "elapsed_s": elapsed, "compactness": compactness_log}
        history.append(row)
        with open(run_dir / "metrics.jsonl", "a") as log:
            log.write(json.dumps(row) + "\n")
        save_atomically(
            {"epoch": epoch + 1, "elapsed_s": elapsed, "model": model.state_dict(), "method": method.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
             "augment_rng": augment.get_state()},
            checkpoint_path,
        )
        if progress:
            tqdm.write(f"{config.name} epoch {epoch + 1}/{config.epochs}: train CE {row['train_ce']:.4f} | test acc "
                       f"{row['test_accuracy']:.2f}% CE {row['test_cross_entropy']:.4f} ECE {row['test_ece']:.4f} | {elapsed:.0f}s")

    summary = {"name": config.name, **history[-1], "train_size": len(train_set), "test_size": len(test_set),  # type: ignore[arg-type]
               "device": str(device)}
    write_json(run_dir / "summary.json", summary)
    return summary


def time_steps(
    configs: list[TrainConfig], splits: Splits, model_factory: Callable[[TrainConfig], Classifier], steps: int = 20
) -> dict[str, float]:
    """Median seconds per training step of each config, measured side by side in this process.

    All configs train on the same S1 (and S2) batches, one step of each in turn per round, so a
    busy machine slows them alike and their ratios stay meaningful. One warm-up round is dropped.
    Returns {config.name: seconds}.
    """
    device = resolve_device(configs[0].device)
    train_set = subset(splits.train, configs[0].train_subset)
    loader = PairedLoader(train_set, configs[0].batch_size, configs[0].second_batch_size, configs[0].seed)
    pairs: list[tuple[Batch, Batch]] = []
    epoch = 0
    while len(pairs) < steps + 1:  # a small training set may take several epochs of batches
        loader.set_epoch(epoch)
        pairs += [tuple(tuple(t.to(device) for t in batch) for batch in pair)
                  for pair in itertools.islice(loader, steps + 1 - len(pairs))]
        epoch += 1
    runners = []
    for config in configs:
        torch.manual_seed(config.seed)
        model = model_factory(config).to(device).train()
        method, optimizer, _ = build(config, splits, len(train_set), model, device)  # type: ignore[arg-type]
        runners.append((config.name, model, method.train(), optimizer))
    times: dict[str, list[float]] = {name: [] for name, *_ in runners}
    for first, second in pairs:
        for name, model, method, optimizer in runners:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            train_step(model, method, optimizer, first, second)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - started)
    return {name: sorted(values[1:])[len(values[1:]) // 2] for name, values in times.items()}
