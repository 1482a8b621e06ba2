"""How tables and figures name a run: its method, the variant of it (the fields it reads that differ from their
default) and its strength, from the facts of `itra.methods.METHODS`."""
from __future__ import annotations

from itra.config import TrainConfig
from itra.methods import METHODS, TRAINING_MODE_FIELDS

STRENGTH_SYMBOLS = {"lam": "λ", "smoothing": "ε"}  # how labels write a method's strength field


def variant_label(config: TrainConfig) -> str:
    """A run's method with every field it reads that differs from its default, its strength aside, and its exit mode:
    `ITRA-c`, `ITRA-c (bandwidth batch, match mmd2)`, `CE (exits shared)`. Runs of one variant differ only by
    strength."""
    spec = METHODS[config.method]
    defaults = TrainConfig()
    changed = [f"{name} {getattr(config, name)}" for name in (*spec.fields, *TRAINING_MODE_FIELDS)
               if name != spec.strength and getattr(config, name) not in (None, getattr(defaults, name))]
    return spec.label + (f" ({', '.join(changed)})" if changed else "")


def strength_text(field: str | None, value: float | None) -> str:
    """A strength as labels write it: `λ=0.6` for ("lam", 0.6), `ε=0.1` for ("smoothing", 0.1); "" without a
    strength `field`."""
    return "" if field is None else f"{STRENGTH_SYMBOLS.get(field, field)}={value:g}"


def strength_label(config: TrainConfig) -> str:
    """How strongly a run's method acts, as labels write it: `λ=0.6`, `ε=0.1`; "" for a method without a strength."""
    strength = METHODS[config.method].strength
    return strength_text(strength, None if strength is None else getattr(config, strength))


def method_label(config: TrainConfig) -> str:
    """How tables and figures name a run's method: `CE`, `LSR ε=0.1`, `ITRA-c λ=0.6`,
    `ITRA-c (bandwidth batch) λ=0.6`."""
    return " ".join(filter(None, (variant_label(config), strength_label(config))))
