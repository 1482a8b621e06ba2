"""The one Hugging Face Hub loader shared by image and text datasets, and the check that the Hub can be reached,
shared with the text models (`itra.models.text`)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from itra.errors import BadValue, MissingFile, NoNetwork, first_line

SPLITS = ("train", "test")
HUB_URL = "https://huggingface.co"  # huggingface_hub's endpoint when HF_ENDPOINT is not set
INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")  # Arrow types of class indices


def load_hub_dataset_dict(name: str, hub_name: str, data_dir: Path | None):
    """A `datasets.DatasetDict` with the `SPLITS`: the `save_to_disk` copy in `data_dir` if there is one
    (`_load_saved_copy`), else from the Hub (cached under `data_dir`); no network is a one-line ConnectionError, a
    damaged copy (or one without rows in a split) or a missing split a one-line ValueError."""
    hub_address()  # before `datasets` imports huggingface_hub
    try:
        import datasets  # optional dependency: only these loaders need it
    except ImportError:
        raise ImportError(f"{name}: loading from the Hugging Face Hub needs `pip install datasets pillow`") from None

    if data_dir is not None and _is_saved_copy(data_dir):
        dataset_dict = _load_saved_copy(datasets, name, hub_name, data_dir)
    else:
        dataset_dict = _download(datasets, name, hub_name, data_dir)
    _check_splits(name, dataset_dict)
    return dataset_dict


def _check_splits(name: str, found, where: Path | None = None) -> None:
    missing = [split for split in SPLITS if split not in found]
    if missing:
        raise BadValue(f"{name}: no {' or '.join(map(repr, missing))} split; splits found: {sorted(found)}"
                       + ("" if where is None else f" (in {where})"))


def _save_hint(hub_name: str) -> str:
    return f"pass --data-dir with a copy saved by `datasets.load_dataset({hub_name!r}).save_to_disk(DIR)`"


def _is_saved_copy(data_dir: Path) -> bool:
    """Whether `data_dir` holds (part of) a `save_to_disk` copy: its index, or a split's state.json; not a cache
    folder of `load_dataset`, which has neither."""
    try:
        return (data_dir / "dataset_dict.json").exists() or (data_dir / "state.json").exists() \
            or any(data_dir.glob("*/state.json"))
    except OSError as error:  # no permission to look into it
        raise BadValue(f"{data_dir}: cannot read it: {error.strerror or error}; give it read and execute permission "
                       "(chmod a+rx)") from None


def _load_saved_copy(datasets, name: str, hub_name: str, data_dir: Path):
    """The `save_to_disk` copy in `data_dir`, read part by part so that a damaged part is named (`datasets` does not
    say which file it failed on): its index, dataset_dict.json (`{"splits": [...]}`), then the folder of each of
    the `SPLITS` it lists (state.json, dataset_info.json and the Arrow files that state.json lists)."""
    hint = _save_hint(hub_name)
    if (data_dir / "state.json").exists():
        raise BadValue(f"{data_dir}: one `Dataset` saved by save_to_disk, not a `DatasetDict` of the splits "
                       f"{', '.join(SPLITS)}; {hint}")
    index = data_dir / "dataset_dict.json"
    splits = _read_json(index, hint).get("splits")
    if not isinstance(splits, list) or not all(isinstance(split, str) for split in splits):
        raise BadValue(f'{index}: expected {{"splits": [the names of the split folders]}}, but "splits" is '
                       f"{splits!r}; {hint}")
    _check_splits(name, splits, index)
    parts = {}
    for split in SPLITS:  # the index's other splits are not read
        folder = data_dir / split
        state = _read_json(folder / "state.json", hint)
        _read_json(folder / "dataset_info.json", hint)
        empty = f"{name}: the {split!r} split in {folder} has no rows; {hint}"
        if state.get("_data_files") == []:  # what save_to_disk writes for no rows, and `datasets` cannot read back
            raise BadValue(empty)
        try:
            parts[split] = datasets.Dataset.load_from_disk(str(folder))
        except (OSError, ValueError, KeyError, TypeError) as error:  # pyarrow on a damaged Arrow file, datasets on
            # a state.json of another shape; neither names the file
            files = ", ".join(["state.json", *sorted(path.name for path in folder.glob("*.arrow"))])
            raise BadValue(f"{folder}: cannot read the {split!r} split of {name} from {files} "
                           f"({type(error).__name__}: {first_line(error)}); {hint}") from None
        if len(parts[split]) == 0:  # what save_to_disk writes of a dataset filtered to no rows
            raise BadValue(empty)
    return datasets.DatasetDict(parts)


def _read_json(path: Path, hint: str) -> dict:
    """The JSON object in `path`; a file that is missing, unreadable, not JSON or not an object is one line naming
    it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file; {hint}") from None
    except (OSError, ValueError) as error:  # a folder, no read permission; not UTF-8, not JSON
        raise BadValue(f"{path}: cannot read it as JSON ({first_line(error)}); {hint}") from None
    if not isinstance(value, dict):
        raise BadValue(f"{path}: expected a JSON object, but got {json.dumps(value)[:80]}; {hint}")
    return value


def check_column_type(name: str, split: str, split_data, column: str, kind: str, hub_name: str) -> None:
    """`column` of `split_data` holds `kind`: "labels" (a ClassLabel or an integer column, no value missing),
    "images" (an Image feature, no value missing) or "texts" (a string column; a missing text is an empty one).
    Raises a one-line `BadValue` naming the split, the column and what it holds."""
    import datasets

    feature = split_data.features[column]
    dtype = getattr(feature, "dtype", None)
    holds = {"labels": isinstance(feature, datasets.ClassLabel) or dtype in INTEGERS,
             "images": isinstance(feature, datasets.Image),
             "texts": dtype in ("string", "large_string")}[kind]
    if not holds:
        raise BadValue(f"{name}: split {split!r} column {column!r} holds {feature}, not {kind}; expected the columns "
                       f"of {hub_name}")
    missing = split_data.data.column(column).null_count
    if missing and kind != "texts":
        raise BadValue(f"{name}: split {split!r} column {column!r} has {missing} missing {kind}; expected the data of "
                       f"{hub_name}")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub can be reached: not with HF_HUB_OFFLINE=1, nor when a TCP connection to its endpoint (HF_ENDPOINT)
    does not open within `timeout` seconds. Checked once per process. Without it, a machine with no network waits
    through the Hub clients' retries (about 25 s for a dataset, 50 s for a model, 20 lines of warnings) before the
    one-line error."""
    host, port = hub_address()
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                             "all_proxy")):
        return True  # through a proxy a direct connection may be refused while the Hub is reachable: the clients try
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_address() -> tuple[str, int]:
    """(host, port) of the Hugging Face Hub: the URL in HF_ENDPOINT, else `HUB_URL`. Called before a Hugging Face
    library is first imported: huggingface_hub parses HF_ENDPOINT on import, and one that is not an http(s) URL with
    a host and a valid port would end there in urllib's ValueError; here it is one line naming the variable.

    >>> hub_address() if "HF_ENDPOINT" not in os.environ else ("huggingface.co", 443)
    ('huggingface.co', 443)
    """
    endpoint = os.environ.get("HF_ENDPOINT", HUB_URL)
    try:
        parsed = urlparse(endpoint)
        port = parsed.port  # urllib checks it here: not a number, out of 0-65535
        why = None if parsed.scheme in ("http", "https") and parsed.hostname else "not an http(s) URL with a host"
    except ValueError as error:  # an IPv6 address without its closing ], a port that is not one
        why = first_line(error)
    if why is not None:
        raise BadValue(f"Expected the environment variable HF_ENDPOINT to be the Hub's URL (https://host[:port]), but "
                       f"it is {endpoint!r} ({why}): correct it or unset it")
    return parsed.hostname, port or (80 if parsed.scheme == "http" else 443)


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
        where = "" if data_dir is None else f" into --data-dir {data_dir}, which holds no copy saved by save_to_disk,"
        raise NoNetwork(
            f"{name}: downloading {hub_name}{where} needs the network ({error}); or {_save_hint(hub_name)}"
        ) from None
