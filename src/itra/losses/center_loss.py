"""Center loss (Wen et al., ECCV 2016): pull each feature towards a running centre of its class."""
from __future__ import annotations

import torch
from torch import nn

from itra.checks import check_count, check_features, check_flag, check_labels, check_number
from itra.distributed import sum_over_ranks
from itra.errors import BadValue, first_line


def center_loss(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """`L_C = 1/2 * mean_i ||x_i - c_{y_i}||^2` (Wen et al., Eq. (2), averaged over the batch).

    features (B, D), labels (B,) in [0, K), centers (K, D) -> scalar. Gradients flow to `features`
    only when `centers` is a buffer (the centres are updated by `center_update`, not by the optimiser).
    """
    return 0.5 * (features - centers[labels]).pow(2).sum(dim=1).mean()


def center_update(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, alpha: float) -> torch.Tensor:
    """One step of Wen et al.'s centre update (their Eq. (4)); returns the new centres (K, D).

    `delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)`,  `c_j <- c_j - alpha * delta_c_j`.
    Classes absent from the batch (n_j = 0) keep their centre. No gradient.

    Under torch.distributed (a process group of several ranks), the n_j and the feature sums are summed
    over all ranks first: every rank takes the step of one process on the concatenated batches, so all
    hold the same centres.
    """
    with torch.no_grad():
        features = features.to(centers.dtype)
        statistics = torch.zeros(centers.shape[0], centers.shape[1] + 1, dtype=centers.dtype, device=centers.device)
        statistics[:, 0].index_add_(0, labels, torch.ones_like(labels, dtype=centers.dtype))
        statistics[:, 1:].index_add_(0, labels, features)
        sum_over_ranks(statistics)  # one all-reduce of (K, 1 + D)
        counts, feature_sums = statistics[:, :1], statistics[:, 1:]  # (K, 1), (K, D)
        delta = (counts * centers - feature_sums) / (1 + counts)
        return centers - alpha * delta


class CenterLoss(nn.Module):
    """Center loss with centres held as a buffer and moved by `center_update` on every training call.

    Args:
        num_classes: K.
        feat_dim: D, the width of the features.
        alpha: the centre learning rate of Wen et al., in [0, 1] (0 freezes the centres).
        validate_args: check shapes, labels and finite values on every call (a device sync each).

    `forward(features, labels, h2=None, y2=None)` (the regularisers' common signature: a second batch, if given, is
    not used) returns `center_loss` computed with the current centres, then (in training mode only) updates the
    centres from the detached features, as Wen et al.'s Algorithm 1 does after each mini-batch. Centres start at
    zero, as in their code.

    Forward:
        features: (B, D) features; labels: (B,) integer labels in [0, K).

    Returns:
        A scalar tensor, `L_C = 1/2 mean_i ||x_i - c_{y_i}||^2` (Wen et al., Eq. (2)).

    Raises:
        BadValue: at construction, `num_classes` or `feat_dim` not an integer >= 1, or centres too many to allocate;
            `alpha` not a number in [0, 1]; `validate_args` not a bool; in a call, features not a finite
            floating-point (B, D) tensor or labels out of range (with `validate_args`).

    Example:
        >>> import torch
        >>> from itra import CenterLoss
        >>> center = CenterLoss(num_classes=2, feat_dim=2, alpha=0.5)
        >>> center(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))  # centres at 0: 1/2 mean of 1
        tensor(0.5000)
        >>> center.centers  # each moved alpha / 2 of the way to its one sample
        tensor([[0.2500, 0.0000],
                [0.0000, 0.2500]])
    """

    centers: torch.Tensor
    needs_second_batch = False

    def __init__(self, num_classes: int, feat_dim: int, alpha: float = 0.5, validate_args: bool = True) -> None:
        super().__init__()
        check_count("num_classes", num_classes)
        check_count("feat_dim", feat_dim)
        check_number("alpha", alpha, lambda value: 0 <= value <= 1, "a number in [0, 1]")
        check_flag("validate_args", validate_args)
        self.alpha = alpha
        self.validate_args = validate_args
        try:
            centers = torch.zeros(num_classes, feat_dim)
        except RuntimeError as error:  # more than this machine's memory, or than an int64 count of elements
            raise BadValue(f"CenterLoss keeps a centre per class: `num_classes` x `feat_dim` = {num_classes} x "
                           f"{feat_dim} floats do not fit ({first_line(error)})") from None
        self.register_buffer("centers", centers)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, h2: torch.Tensor | None = None,
                y2: torch.Tensor | None = None) -> torch.Tensor:
        if self.validate_args:
            self._check(features, labels)
        loss = center_loss(features, labels, self.centers.to(features.dtype))
        if self.training and self.alpha > 0:
            self.centers.copy_(center_update(features, labels, self.centers, self.alpha))
        return loss

    def _check(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        check_features("features", features)
        if features.shape[1] != self.centers.shape[1]:
            raise BadValue(f"Expected `features` of shape (B, {self.centers.shape[1]}), but got {tuple(features.shape)}")
        check_labels("labels", labels, features, self.centers.shape[0])

    def extra_repr(self) -> str:
        return f"num_classes={self.centers.shape[0]}, feat_dim={self.centers.shape[1]}, alpha={self.alpha}"
