"""What the studies of a preset share (`itra reproduce`: a paper table, a layer-wise study): the config of each of
its runs, and the name of the folder its table and figures go to."""
from __future__ import annotations

from typing import Any

from itra.config import TrainConfig
from itra.experiments.presets import LayerwisePreset, Preset
from itra.resolve import resolve


def study_name(name: str, model: str | None = None, smoke: bool = False) -> str:
    """The study's folder in `--out`: `reproduce-NAME-MODEL[-smoke]`; a layer-wise preset, which has one model,
    `reproduce-NAME[-smoke]`."""
    return "-".join(["reproduce", name, *([model] if model is not None else []), *(["smoke"] if smoke else [])])


def preset_config(preset: Preset | LayerwisePreset, seed: int, smoke: bool, fields: dict[str, Any],
                  overrides: dict[str, Any]) -> TrainConfig:
    """The resolved config of one run of `preset`: its dataset, model, epochs, batch size, lr and settings, then
    `fields` (a row's or an arm's own), for `seed`; with `smoke` one epoch on the preset's smoke subsets (a validation
    split, where there is one, as large as the smoke test set); then `overrides` (TrainConfig fields; None: not
    given)."""
    values: dict[str, Any] = dict(dataset=preset.dataset, model=preset.model, epochs=preset.epochs,
                                  batch_size=preset.batch_size, lr=preset.lr, seed=seed, **preset.settings)
    values.update(fields)
    if smoke:
        values.update(epochs=1, train_subset=preset.smoke_train, test_subset=preset.smoke_test)
        if values.get("val_split"):
            values["val_split"] = preset.smoke_test
    values.update({key: value for key, value in overrides.items() if value is not None})
    return resolve(TrainConfig(**values))
