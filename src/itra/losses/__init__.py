"""Loss modules: ITRA's matching term and the Center-loss baseline.

Label smoothing (the LSR baseline) is `F.cross_entropy(logits, y, label_smoothing=eps)`.
"""
from itra.losses.center_loss import CenterLoss, center_loss, center_update
from itra.losses.itra_loss import ITRALoss

__all__ = ["CenterLoss", "ITRALoss", "center_loss", "center_update"]
