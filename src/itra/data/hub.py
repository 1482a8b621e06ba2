"""The one Hugging Face Hub loader shared by image and text datasets."""
from __future__ import annotations

from pathlib import Path
from itra.errors import BadValue, NoNetwork

SPLITS = ("train", "test")


def load_hub_dataset_dict(name: str, hub_name: str, data_dir: Path | None):
    """A `datasets.DatasetDict` with the `SPLITS`: the `save_to_disk` copy in `data_dir` if there is one,
    else from the Hub (cached under `data_dir`); no network is a one-line ConnectionError, a missing
    split a one-line ValueError."""
    try:
        import datasets  # optional dependency: only these loaders need it
    except ImportError:
        raise ImportError(f"{name}: loading from the Hugging Face Hub needs `pip install datasets pillow`") from None

    if data_dir is not None and (data_dir / "dataset_dict.json").is_file():
        dataset_dict = datasets.load_from_disk(str(data_dir))
    else:
        dataset_dict = _download(datasets, name, hub_name, data_dir)
    missing = [split for split in SPLITS if split not in dataset_dict]
    if missing:
        raise BadValue(f"{name}: no {' or '.join(map(repr, missing))} split; splits found: {sorted(dataset_dict)}")
    return dataset_dict


def _download(datasets, name: str, hub_name: str, data_dir: Path | None):
    try:
        return datasets.load_dataset(hub_name, cache_dir=None if data_dir is None else str(data_dir))
    except ConnectionError as error:  # what `datasets` raises when the Hub cannot be reached or HF_HUB_OFFLINE=1
        raise NoNetwork(
            f"{name}: downloading {hub_name} needs the network ({error}); or pass --data-dir with a copy "
            f"saved by `datasets.load_dataset({hub_name!r}).save_to_disk(DIR)`"
        ) from None
