"""ITRA's matching term as a module: `loss = CE(C(h1), y1) + lam * ITRALoss()(h1, y1, h2, y2)`."""
from __future__ import annotations

import torch
from torch import nn

from itra.checks import check_bandwidth, check_count, check_flag
from itra.mmd import BANDWIDTH_MODES, Bandwidth, class_conditional_mmd, mmd
from itra.errors import BadValue


class ITRALoss(nn.Module):
    """Match(H1, H2) between the features of two mini-batches (paper, Eq. (3) and Eq. (5)).

    Args:
        conditional: True for ITRA-c (Eq. (5), the paper's default): the mean over classes of
            MMD(H1^k, H2^k); False for plain ITRA (Eq. (3)): MMD(H1, H2), labels unused.
        bandwidth: "batch" (default: one median for the pooled batch), "class" (a median per class:
            the paper as we read it, see `paper()`), "multi" (kernels at several multiples of the
            batch median, averaged: the DAN convention) or a fixed float sigma; the vocabulary of
            `itra.mmd`. Unconditional ITRA has a single group, so "class" and "batch" coincide.
        num_classes: K; when None it is taken as 1 + the largest label seen in the two batches, which
            gives the same value (absent classes are left out of the mean either way).
        validate_args: check the inputs of every call (shapes, labels, finite values). The checks
            read values back from the device, a sync per step on a GPU: the trainer turns them off.
        squared: match with MMD^2 instead of MMD (the square root's gradient does not vanish as
            MMD -> 0; MMD^2's does).

    Forward (the regularisers' one signature, `forward(h1, y1, h2, y2)`):
        h1: (n, D) features of mini-batch S1; y1: (n,) their labels (unused by plain ITRA).
        h2: (m, D) features of mini-batch S2; y2: (m,) their labels.

    Returns:
        A scalar tensor, Match(H1, H2) (`itra.class_conditional_mmd`, or `itra.mmd` unconditionally); the caller
        multiplies it by lambda: `loss = CE(C(h1), y1) + lam * match(h1, y1, h2, y2)`.

    Raises:
        BadValue: at construction, `num_classes` not an integer >= 1, an unknown `bandwidth`, or `conditional`,
            `validate_args` or `squared` not a bool; in a call, no second
            batch, no labels for ITRA-c, or inputs that `itra.class_conditional_mmd` refuses (with `validate_args`).

    Example:
        >>> import torch
        >>> from itra import ITRALoss
        >>> match = ITRALoss()  # ITRA-c, one median bandwidth for the pooled batch
        >>> h1, h2 = torch.tensor([[0.0], [0.0], [5.0], [5.0]]), torch.tensor([[1.0], [1.0], [5.0], [5.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> value = match(h1, y, h2, y)
        >>> value.shape, bool(value > 0)
        (torch.Size([]), True)
        >>> round(ITRALoss.paper()(h1, y, h2, y).item(), 4)  # a median per class: (sqrt(2 (1 - e^-1)) + 0) / 2
        0.5622
        >>> match(h1, y, h1, y)  # the same features: nothing to match
        tensor(0.)
    """

    needs_second_batch = True

    def __init__(self, conditional: bool = True, bandwidth: Bandwidth = "batch", num_classes: int | None = None,
                 validate_args: bool = True, squared: bool = False):
        super().__init__()
        if num_classes is not None:
            check_count("num_classes", num_classes, hint=" (None: 1 + the largest label seen)")
        check_bandwidth(bandwidth, modes=BANDWIDTH_MODES)
        for name, value in (("conditional", conditional), ("validate_args", validate_args), ("squared", squared)):
            check_flag(name, value)
        self.validate_args = validate_args
        self.squared = squared
        self.conditional = conditional
        self.bandwidth = bandwidth
        self.num_classes = num_classes

    @classmethod
    def paper(cls, num_classes: int | None = None, validate_args: bool = True) -> "ITRALoss":
        """ITRA-c as the paper reads: Eq. (5), MMD with the median bandwidth of each class. It
        collapses (every feature the same vector) with one sample per class per batch, noisy labels
        or a large λ: see README, "What ITRA-c does, and when it fails"."""
        return cls(True, "class", num_classes, validate_args, squared=False)

    def forward(
        self,
        h1: torch.Tensor,
        y1: torch.Tensor | None = None,
        h2: torch.Tensor | None = None,
        y2: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if h2 is None:
            raise BadValue("Expected the features of both mini-batches: call as loss(h1, y1, h2, y2)")
        if not self.conditional:
            return mmd(h1, h2, self.bandwidth, self.validate_args, self.squared)
        if y1 is None or y2 is None:
            raise BadValue("Expected labels y1 and y2 for class-conditional ITRA (conditional=True)")
        if self.validate_args:  # the class count is read from the labels before `class_conditional_mmd` checks them
            for name, value in (("h1", h1), ("y1", y1), ("h2", h2), ("y2", y2)):
                if not isinstance(value, torch.Tensor):
                    raise BadValue(f"Expected `{name}` to be a torch.Tensor, but got {type(value).__name__}: "
                                     "convert it with torch.as_tensor")
        num_classes = self.num_classes
        if num_classes is None:
            num_classes = int(torch.maximum(y1.max(), y2.max())) + 1 if y1.numel() and y2.numel() else 1
        return class_conditional_mmd(h1, y1, h2, y2, num_classes, self.bandwidth, self.validate_args, self.squared)

    def extra_repr(self) -> str:
        return (f"conditional={self.conditional}, bandwidth={self.bandwidth!r}, num_classes={self.num_classes}, "
                f"squared={self.squared}")
