"""In-Training Representation Alignment (ITRA) for PyTorch."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("itra")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+unknown"
