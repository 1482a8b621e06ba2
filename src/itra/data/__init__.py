"""Datasets: each loader returns `Splits`."""
from itra.data.splits import BatchTransform, Splits

__all__ = ["BatchTransform", "Splits"]
