"""In-Training Representation Alignment (ITRA) for PyTorch."""
from importlib.metadata import PackageNotFoundError, version

from itra.data.paired import PairedLoader
from itra.losses import CenterLoss, ITRALoss
from itra.mmd import class_conditional_mmd, mmd

try:
    __version__ = version("itra")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+unknown"

__all__ = ["CenterLoss", "ITRALoss", "PairedLoader", "class_conditional_mmd", "mmd"]
