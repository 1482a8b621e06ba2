"""The layer-wise view of a trained multi-exit model (`Classifier.exits`), measured after training: every exit's
accuracy through the shared head and its own head, cosine and CKA between exits, the saturation layer, and early
exit by confidence (Jiang, Zhou and Zhu, 2024). `experiments.layerwise` runs it on a run directory.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from itra.data.batches import ordered_batches
from itra.metrics import classification_metrics
from itra.models import Classifier
from itra.similarity import CKAAccumulator, CosineAccumulator
from itra.errors import BadValue


# Confidence thresholds of the early-exit curve; one above 1 is never reached: every sample runs to the last layer.
EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 2.0)
HEAD_METRICS = ("accuracy", "cross_entropy", "ece")


def saturation_layers(logits: torch.Tensor) -> torch.Tensor:
    """The saturation layer of every sample from the logits (L, N, K) of its L exits: (N,) long in 1..L, the
    smallest l such that the top-1 prediction of every exit l' >= l equals that of the last exit (Jiang et al.
    2024 read the depth a task needs from it). Per sample: a prediction that changes and comes back counts from
    its last change."""
    if logits.ndim != 3:
        raise BadValue(f"Expected logits (L, N, K) of L exits, but got shape {tuple(logits.shape)}")
    agree = logits.argmax(dim=2) == logits[-1].argmax(dim=1)  # (L, N)
    settled = agree.flip(0).long().cumprod(dim=0).sum(dim=0)  # (N,): how many of the last exits agree in a row, >= 1
    return len(logits) - settled + 1


def early_exit(logits: torch.Tensor, labels: torch.Tensor, thresholds: Sequence[float] = EXIT_THRESHOLDS
               ) -> list[dict[str, float]]:
    """Early exit by confidence: for each threshold t, every sample leaves at the first exit l whose max softmax
    probability is >= t (at the last exit L when none is), with that exit's top-1 prediction.

    From logits (L, N, K) of the L exits and labels (N,), one dict per threshold: `threshold` t, `accuracy` (%) of
    the predictions at the exits taken, and `relative_compute` = mean_i l_i / L, the mean exit layer as a
    fraction of the whole depth (1 when every sample runs to the end: any t above 1). t = 0 exits at layer 1.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[1:2]:
        raise BadValue(f"Expected logits (L, N, K) and labels (N,), but got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    confidence = logits.double().softmax(dim=2).amax(dim=2)  # (L, N), float64: thresholds near 1 stay exact
    predictions = logits.argmax(dim=2)  # (L, N)
    samples = torch.arange(logits.shape[1], device=logits.device)
    curve = []
    for threshold in thresholds:
        leaves = confidence >= threshold
        leaves[-1] = True
        layer = leaves.int().argmax(dim=0)  # (N,) 0-based: the first exit confident enough (argmax: first maximum)
        correct = predictions[layer, samples] == labels
        curve.append({"threshold": float(threshold), "accuracy": 100.0 * float(correct.double().mean()),
                      "relative_compute": float((layer + 1).double().mean() / len(logits))})
    return curve


def cosine_cka_correlation(cosine: list[list[float | None]], cka: list[list[float]]) -> float | None:
    """Pearson correlation between two L x L similarity matrices (`layerwise`'s `cosine_matrix` and `cka`) over
    the pairs of layers i < j where both are defined (not None, not NaN): how far the sample-wise cosine tells
    the same story as CKA (Jiang et al. 2024). None when fewer than 2 pairs, or when either is constant over them."""
    pairs = [(cosine[i][j], cka[i][j]) for i in range(len(cka)) for j in range(i + 1, len(cka))]
    defined = [pair for pair in pairs if all(value is not None and not math.isnan(value) for value in pair)]
    if len(defined) < 2:
        return None
    centred = torch.tensor(defined, dtype=torch.float64)  # (P, 2)
    centred = centred - centred.mean(dim=0)
    spread = centred.pow(2).sum(dim=0).prod().sqrt()
    return None if spread == 0 else float((centred[:, 0] @ centred[:, 1]) / spread)


class _LayerPairs:
    """Linear CKA (biased and debiased) between every pair of layers i <= j, and the sample-wise cosine where
    their widths are equal, accumulated over batches of exits."""

    def __init__(self, widths: list[int]) -> None:
        self.widths = widths
        self.size = len(widths)
        self.cka = {(i, j): CKAAccumulator(widths[i], widths[j]) for i in range(self.size) for j in range(i, self.size)}
        self.cosine = {(i, j): CosineAccumulator() for i, j in self.cka if widths[i] == widths[j]}

    def update(self, exits: list[torch.Tensor]) -> None:
        for (i, j), accumulator in [*self.cka.items(), *self.cosine.items()]:
            accumulator.update(exits[i], exits[j])

    def matrices(self) -> dict[str, list[list[float | None]]]:
        """`cosine_matrix` (None where the widths differ), `cka` and `cka_debiased`: symmetric L x L lists."""
        def symmetric(values: dict[tuple[int, int], float]) -> list[list[float | None]]:
            return [[values.get((min(i, j), max(i, j))) for j in range(self.size)] for i in range(self.size)]

        return {"cosine_matrix": symmetric({key: float(acc.compute()) for key, acc in self.cosine.items()}),
                "cka": symmetric({key: float(acc.compute()) for key, acc in self.cka.items()}),
                "cka_debiased": symmetric({key: float(acc.compute(debiased=True)) for key, acc in self.cka.items()})}


def _head_metrics(logits: list[torch.Tensor | None], labels: torch.Tensor, prefix: str) -> dict[str, list]:
    """`prefix` + accuracy, cross_entropy and ece of every exit's logits (N, K) (None where an exit has none)."""
    scores = [None if z is None else classification_metrics(z, labels) for z in logits]
    return {prefix + name: [None if score is None else score[name] for score in scores] for name in HEAD_METRICS}


def _exit_behaviour(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, dict]:
    """`saturation` and `early_exit` of each head kind, from its logits (L, N, K)."""
    saturation = {}
    for kind, z in logits.items():
        layers = saturation_layers(z)  # (N,)
        saturated = torch.bincount(layers - 1, minlength=len(z)).cumsum(dim=0).double() / len(layers)  # (L,)
        saturation[kind] = {"mean_layer": float(layers.double().mean()), "saturated": saturated.tolist()}
    return {"saturation": saturation, "early_exit": {kind: early_exit(z, labels) for kind, z in logits.items()}}


@torch.no_grad()
def layerwise(model: Classifier, dataset: Dataset, device: torch.device, batch_size: int = 500) -> dict[str, Any]:
    """The layer-wise view of `model` on `dataset`, in eval mode, in one pass over batches (only the exits'
    logits, (N, K) per layer and head kind, are kept whole; the similarities accumulate).

    With h_l (N, D_l) the representation after layer l = 1..L (`model.exits`), returns (lists over l, L x L
    matrices as lists of rows, all JSON-ready):
    - `width`: D_l;
    - `accuracy` (%), `cross_entropy` and `ece` of the shared head C(h_l) (`metrics.classification_metrics`),
      where D_l equals the head's input width (None elsewhere): the last layer's classifier right after layer l;
    - `separate_accuracy`, `separate_cross_entropy`, `separate_ece`: the same with exit l's own head
      (`model.exit_logits(exits, separate=True)`), only when the model has `exit_heads`; at l = L it is the same head;
    - `cosine`: mean_i cos(h_l,i, h_L,i), the sample-wise cosine with the last layer (None where D_l != D_L);
    - `cosine_matrix`: the sample-wise cosine between every pair of layers (None where the widths differ);
    - `cka`, `cka_debiased`: linear CKA between every pair of layers (symmetric);
    - `cosine_cka_correlation`: Pearson r of `cosine_matrix` and `cka` over layer pairs i < j
      (`cosine_cka_correlation`), None when undefined;
    - `saturation`: {kind: {`mean_layer`, `saturated`}} per head kind, `shared` (when every D_l equals the head's
      width) and `separate` (with exit heads): the mean over samples of the per-sample saturation layer
      (`saturation_layers`), and for l = 1..L the fraction of samples saturated by layer l (their prediction no
      longer changes from layer l on; non-decreasing, 1 at L);
    - `early_exit`: {kind: [{`threshold`, `accuracy`, `relative_compute`}]} per head kind, the early-exit curve over
      `EXIT_THRESHOLDS` (`early_exit`).
    """
    model.eval()
    separate = len(model.exit_heads) > 0
    labels: list[torch.Tensor] = []
    shared: list[list[torch.Tensor | None]] = []  # per batch, (B, K) per layer the shared head reads, else None
    own: list[list[torch.Tensor]] = []  # per batch, (B, K) per layer from its own head
    pairs: _LayerPairs | None = None
    for *inputs, y in ordered_batches(dataset, batch_size):
        exits = model.exits(*(x.to(device) for x in inputs))
        if pairs is None:
            pairs = _LayerPairs([h.shape[1] for h in exits])
        labels.append(y)
        shared.append([model.head(h).cpu() if h.shape[1] == model.feature_dim else None for h in exits])
        if separate:
            own.append([z.cpu() for z in model.exit_logits(exits, separate=True)])
        pairs.update(exits)
    if pairs is None:
        raise BadValue("Expected at least one sample to measure the layers on, but the dataset is empty")
    targets = torch.cat(labels)
    shared_logits = [None if layer[0] is None else torch.cat(layer) for layer in zip(*shared)]
    kinds = {}  # head kind: logits (L, N, K) of every exit
    if all(z is not None for z in shared_logits):
        kinds["shared"] = torch.stack(shared_logits)  # type: ignore[arg-type]
    measured: dict[str, Any] = {"width": pairs.widths, **_head_metrics(shared_logits, targets, "")}
    if separate:
        kinds["separate"] = torch.stack([torch.cat(layer) for layer in zip(*own)])
        measured.update(_head_metrics(list(kinds["separate"]), targets, "separate_"))
    matrices = pairs.matrices()
    return {**measured, "cosine": [row[-1] for row in matrices["cosine_matrix"]], **matrices,
            "cosine_cka_correlation": cosine_cka_correlation(matrices["cosine_matrix"], matrices["cka"]),
            **_exit_behaviour(kinds, targets)}
