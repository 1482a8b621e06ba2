"""The one Hugging Face Hub loader shared by image and text datasets, and the check that the Hub can be reached,
shared with the text models (`itra.models.text`)."""
from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

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


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub can be reached: not with HF_HUB_OFFLINE=1, nor when a TCP connection to its endpoint (HF_ENDPOINT)
    does not open within `timeout` seconds. Checked once per process. Without it, a machine with no network waits
    through the Hub clients' retries (about 25 s for a dataset, 50 s for a model, 20 lines of warnings) before the
    one-line error."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                             "all_proxy")):
        return True  # through a proxy a direct connection may be refused while the Hub is reachable: the clients try
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or (80 if endpoint.scheme == "http" else 443)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def offline_unless_reachable(*modules) -> Iterator[None]:
    """With the Hub out of reach, the Hub clients' offline mode (their caches only, no retries) for `modules`, each
    a module with an `HF_HUB_OFFLINE` setting (`datasets.config`, `huggingface_hub.constants`), restored after."""
    if hub_reachable():
        yield
        return
    saved = [module.HF_HUB_OFFLINE for module in modules]
    for module in modules:
        module.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for module, value in zip(modules, saved):
            module.HF_HUB_OFFLINE = value


def _download(datasets, name: str, hub_name: str, data_dir: Path | None):
    from huggingface_hub import constants

    try:
        with offline_unless_reachable(datasets.config, constants):
            return datasets.load_dataset(hub_name, cache_dir=None if data_dir is None else str(data_dir))
    except ConnectionError as error:  # what `datasets` raises when the Hub cannot be reached or HF_HUB_OFFLINE=1
        raise NoNetwork(
            f"{name}: downloading {hub_name} needs the network ({error}); or pass --data-dir with a copy "
            f"saved by `datasets.load_dataset({hub_name!r}).save_to_disk(DIR)`"
        ) from None
