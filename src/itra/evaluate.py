"""Evaluation during and after training: predictions, the per-epoch metrics row, the compactness probe,
and the layer-wise view (every exit's accuracy through the shared head, cosine and CKA between exits).

Everything goes through `Objective.embed`, so a model is evaluated the way it is trained.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from itra.data.batches import Batch, ordered_batches, subset_by_index
from itra.distributed import Dist
from itra.methods import Objective
from itra.metrics import classification_metrics, compactness
from itra.models import Classifier
from itra.similarity import CKAAccumulator, CosineAccumulator


@torch.no_grad()
def predict(objective: Objective, dataset: Dataset, device: torch.device, batch_size: int = 1000
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, D), logits (N, K) and labels (N,) of a whole dataset, in eval mode, on the CPU.
    Leaves the objective in eval mode."""
    objective.eval()
    features, logits, labels = [], [], []
    for *inputs, y in ordered_batches(dataset, batch_size):
        h, z = objective.embed(*(x.to(device) for x in inputs))
        features.append(h.cpu())
        logits.append(z.cpu())
        labels.append(y)
    return torch.cat(features), torch.cat(logits), torch.cat(labels)


def evaluate(objective: Objective, dataset: Dataset, device: torch.device, dist: Dist = Dist()) -> dict[str, float]:
    """`test_accuracy` (%), `test_cross_entropy` (nats) and `test_ece` on `dataset`. With several ranks, each
    predicts its contiguous share of `dataset` and the logits (N, K) are gathered: every rank gets the metrics
    of the whole set (evaluated by one model when the ranks hold the same one: `Dist.sync_buffers`)."""
    shard = dataset if dist.world_size == 1 else subset_by_index(dataset, dist.shard(len(dataset)))  # type: ignore[arg-type]
    _, logits, labels = predict(objective, shard, device)
    logits, labels = dist.gather_rows(logits), dist.gather_rows(labels)
    return {f"test_{name}": value for name, value in classification_metrics(logits, labels).items()}


def compactness_probe(dataset: Dataset, generator: torch.Generator, size: int = 256) -> tuple[Batch, Batch]:
    """Two fixed, disjoint random training batches on which compactness is followed during training."""
    size = min(size, len(dataset) // 2)  # type: ignore[arg-type]
    order = torch.randperm(len(dataset), generator=generator)[: 2 * size]  # type: ignore[arg-type]
    first, second = ordered_batches(subset_by_index(dataset, order), size)  # exactly two batches
    return first, second


@torch.no_grad()
def probe_compactness(objective: Objective, probe: tuple[Batch, Batch], device: torch.device) -> float:
    """`metrics.compactness` of the features of the two probe batches, in eval mode; restores train mode."""
    objective.eval()
    (*inputs1, y1), (*inputs2, y2) = probe
    h1, _ = objective.embed(*(x.to(device) for x in inputs1))
    h2, _ = objective.embed(*(x.to(device) for x in inputs2))
    objective.train()
    return compactness(h1, y1.to(device), h2, y2.to(device))


@torch.no_grad()
def layerwise(model: Classifier, dataset: Dataset, device: torch.device, batch_size: int = 500) -> dict[str, list]:
    """The layer-wise view of `model` on `dataset`, in eval mode, in one pass over batches (only the
    shared head's logits, (N, K) per layer, are kept whole; the similarities accumulate).

    With h_l (N, D_l) the representation after layer l = 1..L (`model.exits`), returns lists over l:
    - `width`: D_l;
    - `accuracy` (%), `cross_entropy` and `ece` of the shared head C(h_l) (`metrics.classification_metrics`),
      where D_l equals the head's input width (None elsewhere): the last layer's classifier right after layer l;
    - `cosine`: mean_i cos(h_l,i, h_L,i), the sample-wise cosine with the last layer (None where D_l != D_L);
    - `cka`, `cka_debiased`: L x L matrices of linear CKA between every pair of layers (symmetric).
    """
    model.eval()
    labels, logits = [], []  # per batch; logits: one (B, K) per layer the head reads, else None
    widths: list[int] = []
    cosines: list[CosineAccumulator | None] = []
    pairs: dict[tuple[int, int], CKAAccumulator] = {}
    for *inputs, y in ordered_batches(dataset, batch_size):
        exits = model.exits(*(x.to(device) for x in inputs))
        if not widths:
            widths = [h.shape[1] for h in exits]
            cosines = [CosineAccumulator() if width == widths[-1] else None for width in widths]
            pairs = {(i, j): CKAAccumulator(widths[i], widths[j]) for i in range(len(exits)) for j in range(i, len(exits))}
        labels.append(y)
        logits.append([model.head(h).cpu() if h.shape[1] == model.head.in_features else None for h in exits])
        for h, cosine in zip(exits, cosines):
            if cosine is not None:
                cosine.update(h, exits[-1])
        for (i, j), accumulator in pairs.items():
            accumulator.update(exits[i], exits[j])
    if not labels:
        raise ValueError("Expected at least one sample to measure the layers on, but the dataset is empty")
    targets = torch.cat(labels)
    scores = [None if layer[0] is None else classification_metrics(torch.cat(layer), targets) for layer in zip(*logits)]
    layers = range(len(widths))

    def matrix(debiased: bool) -> list[list[float]]:
        values = {key: float(accumulator.compute(debiased)) for key, accumulator in pairs.items()}
        return [[values[(min(i, j), max(i, j))] for j in layers] for i in layers]

    return {
        "width": widths,
        **{name: [None if score is None else score[name] for score in scores] for name in ("accuracy", "cross_entropy", "ece")},
        "cosine": [None if cosine is None else float(cosine.compute()) for cosine in cosines],
        "cka": matrix(False),
        "cka_debiased": matrix(True),
    }
