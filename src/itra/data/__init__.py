"""Datasets: each loader returns `Splits`."""
from itra.data.fashion_mnist import IdxFormatError, load_fashion_mnist, read_idx
from itra.data.paired import PairedLoader
from itra.data.splits import BatchTransform, Splits

__all__ = ["BatchTransform", "IdxFormatError", "PairedLoader", "Splits", "load_fashion_mnist", "read_idx"]
