"""Datasets by name, as `--dataset` takes them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from itra.data.fashion_mnist import load_fashion_mnist
from itra.data.splits import Splits

DATASETS: dict[str, Callable[..., Splits]] = {
    "fashion-mnist": load_fashion_mnist,
}
ALIASES = {"fmnist": "fashion-mnist"}


def canonical_dataset_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of: {', '.join(sorted(DATASETS))}")
    return name


def load_dataset(name: str, data_dir: str | Path | None = None) -> Splits:
    """Load a dataset by name; `data_dir` None means the loader's default location."""
    loader = DATASETS[canonical_dataset_name(name)]
    return loader() if data_dir is None else loader(Path(data_dir))
