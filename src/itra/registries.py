"""What the registries of `itra` share (`METHODS`, `PAIRINGS`, `OPTIMIZERS`: one entry per choice of a config field):
looking a choice up, and adding one."""
from __future__ import annotations

from typing import Mapping, TypeVar

from itra.checks import check_choice
from itra.errors import BadValue

Entry = TypeVar("Entry")


def entry(table: Mapping[str, Entry], field: str, name: str) -> Entry:
    """`table[name]`, the entry of config field `field`'s choice `name`; a one-line error listing the choices."""
    check_choice(field, name, table)
    return table[name]


def check_new(table: Mapping[str, object], name: str, kind: str) -> None:
    """That `name` is not in `table` yet (`kind`: "A method", "A pairing", "An optimizer"), before it is added."""
    if name in table:
        raise BadValue(f"{kind} named {name!r} exists already")
