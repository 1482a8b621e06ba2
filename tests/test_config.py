"""TrainConfig: validation with one clear message per bad value, and run names."""
import dataclasses
import json
import math
from pathlib import Path

import pytest

from itra.config import FIELD_ORDER, GROUPS, LOCATION_FIELDS, RUN_NAME, WRITTEN_BEFORE, TrainConfig
from tests.helpers import resolved


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        resolved(method="mixup")
    with pytest.raises(ValueError, match="bandwidth"):
        resolved(bandwidth="median")
    with pytest.raises(ValueError, match="Unknown config keys: colour"):
        TrainConfig.from_dict({"colour": "red"})
    assert resolved(bandwidth="2.5").bandwidth == 2.5  # parsed once, into itra.mmd's vocabulary
    with pytest.raises(ValueError, match="optimizer"):
        resolved(optimizer="adam")
    with pytest.raises(ValueError, match="max_length"):
        resolved(max_length=1)


def test_model_paths_in_run_names(tmp_path):
    (tmp_path / "all-MiniLM-L6-v2").mkdir()  # a local encoder directory must be there (resolve checks it)
    config = resolved(dataset="wordnet", model=str(tmp_path / "all-MiniLM-L6-v2"), method="ce", seed=2)
    assert config.name.startswith("wordnet-all-MiniLM-L6-v2-ce-") and "/" not in config.name


def test_fields_a_method_does_not_read_are_reset():
    assert resolved(method="ce", lam=0.3, smoothing=0.2, bandwidth="class", lam_warmup=0) == resolved(method="ce")
    assert resolved(method="lsr", lam=0.3).lam is None  # off: LSR reads no λ
    assert resolved(method="lsr", smoothing=0.2).smoothing == 0.2
    assert resolved(method="itra-c", lam=0.3, center_alpha=0.1).center_alpha is None
    assert resolved(method="center", lam=0.3, center_alpha=0.1).center_alpha == 0.1


# A valid value other than the default for every field, a method that reads it, and what else it needs to act.
OTHER_VALUES = {
    "dataset": ("digits", "ce"), "model": ("resnet18", "ce"), "pretrained": (True, "ce", {"model": "timm:resnet18"}), "method": ("center", "center"), "lam": (0.3, "itra-c"),
    "smoothing": (0.2, "lsr"), "center_alpha": (0.1, "center"), "bandwidth": ("class", "itra-c"),
    "batch_size": (64, "ce"), "second_batch_size": (32, "itra-c"), "epochs": (3, "ce"), "train_subset": (500, "ce"),
    "test_subset": (200, "ce"), "val_split": (500, "ce"), "label_noise": (0.2, "ce"), "optimizer": ("adamw", "ce"), "lr": (0.01, "ce"),
    "momentum": (0.8, "ce"), "weight_decay": (0.001, "ce"), "max_length": (64, "ce", {"dataset": "wordnet", "model": "minilm"}), "compactness_every": (10, "ce"),
    "seed": (1, "ce"), "match": ("mmd2", "itra-c"), "lam_warmup": (100, "itra-c"), "lam_warmup_ratio": (0.2, "itra-c"), "precision": ("bf16", "ce"),
    "pairing": ("split", "itra-c"), "s2_state": ("update", "itra-c"), "exits": ("shared", "ce", {"model": "vit"}),
    "match_ranks": ("global", "itra-c", {"world_size": 2}), "world_size": (2, "ce"),
    "exit_weights": ("uniform", "ce", {"model": "vit", "exits": "separate"}), "match_at": ("every", "itra-c", {"model": "vit", "exits": "shared"}),
}


def test_every_field_but_the_location_is_in_the_run_name():
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    assert set(LOCATION_FIELDS) == {"device", "data_dir", "tensorboard", "compile", "deterministic", "workers"}
    assert set(OTHER_VALUES) | set(LOCATION_FIELDS) == set(fields)
    unnamed = set(fields) - {name for name, _ in RUN_NAME}
    assert unnamed == set(LOCATION_FIELDS)
    names = set()
    for field, (value, method, *context) in OTHER_VALUES.items():
        needs = context[0] if context else {}
        base = resolved() if field == "method" else resolved(method=method, **needs)
        other = resolved(**{"method": method, **needs, field: value})
        assert other != base and other.name != base.name, field
        names.add(other.name)
    assert len(names) == len(OTHER_VALUES)  # no two of these configs share a directory
    located = resolved(device="cpu", data_dir="/data", tensorboard=True, compile=True)
    assert located.name == resolved().name and located.same_run(resolved())
    assert not resolved(lr=0.01).same_run(resolved())


def test_exit_fields_that_one_exit_does_not_read_are_reset_and_previous_matches_the_last_exit_only():
    assert resolved(exit_weights="uniform", match_at="every") == resolved()
    assert resolved(method="ce", model="vit", exits="shared", match_at="every").match_at is None  # CE matches nothing
    assert resolved(model="vit", exits="shared", exit_weights="uniform", match_at="every").name == \
        "fashion-mnist-vit-itra-c-lam0.6-warmr0.1-s2keep-exitsshared-wuniform-atevery-bs128-e15-seed0"
    with pytest.raises(ValueError, match="with --match-at every, but got previous"):
        resolved(model="vit", exits="shared", match_at="every", pairing="previous")
    with pytest.raises(ValueError, match="--exits separate: --model cnn has no layer-wise exits"):
        resolved(exits="separate")  # before any data loads
    with pytest.raises(ValueError, match=r"which takes width 512, but the exits of --model resnet18 differ in width "
                                         r"\(\[64, 128, 256, 512\]\): use --exits separate$"):
        resolved(model="resnet18", exits="shared")
    with pytest.raises(ValueError, match="Expected `exits` in last, shared, separate, but got 'all'"):
        resolved(exits="all")


def test_run_names_read_well():
    assert resolved(lam=0.6, epochs=10).name == "fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-s2keep-bs128-e10-seed0"
    assert resolved(method="ce", lr=0.5, train_subset=100, label_noise=0.4, seed=2).name == \
        "fashion-mnist-cnn-ce-bs128-e15-n100-noise0.4-lr0.5-seed2"
    assert resolved(bandwidth="class").name.endswith("-bwclass-warmr0.1-s2keep-bs128-e15-seed0")
    assert resolved(bandwidth="class", lam_warmup=0).name.endswith("-bwclass-warm0-s2keep-bs128-e15-seed0")  # the paper
    assert resolved(lr=0.1 + 0.2).name != resolved(lr=0.3).name  # floats keep the digits that tell them apart
    assert resolved(lam=0.1, seed=3).group == "fashion-mnist-cnn-itra-c-lam0.1-warmr0.1-s2keep-bs128-e15"
    assert resolved(world_size=4, match_ranks="global").name == \
        "fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-s2keep-ranksglobal-bs128-ws4-e15-seed0"  # per-rank batch 128, global batch 512


@pytest.mark.parametrize("field, value, message", [
    ("train_subset", -5, "Expected `train_subset` to be an integer larger than 0, but got -5"),
    ("train_subset", 0, "Expected `train_subset` to be an integer larger than 0, but got 0"),
    ("test_subset", 0, "Expected `test_subset` to be an integer larger than 0, but got 0"),
    ("val_split", -1, "Expected `val_split` to be an integer >= 0, but got -1 (0: no validation set)"),
    ("second_batch_size", 0, "Expected `second_batch_size` to be an integer larger than 0"),
    ("lam", math.nan, "Expected `lam` to be a finite number, but got nan"),
    ("lr", math.nan, "Expected `lr` to be a finite number, but got nan"),
    ("lr", math.inf, "Expected `lr` to be a finite number, but got inf"),
    ("bandwidth", "nan", "Expected `bandwidth`"),
    ("center_alpha", 2.0, "Expected `center_alpha` in [0, 1]"),
    ("momentum", -0.1, "Expected `momentum` in [0, 1), but got -0.1"),
    ("world_size", 0, "Expected `world_size` to be an integer larger than 0, but got 0"),
    ("match_ranks", "all", "Expected `match_ranks` in local, global, but got 'all'"),
])
def test_bad_values_name_themselves(field, value, message):
    with pytest.raises(ValueError) as error:
        resolved(**{field: value})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_bandwidth_mode_is_a_valid_flag():
    from itra.mmd import BANDWIDTH_MODES

    for mode in BANDWIDTH_MODES:
        assert resolved(bandwidth=mode).bandwidth == mode
    assert resolved(bandwidth="0.5").bandwidth == 0.5 == resolved(bandwidth="0.50").bandwidth  # one name, one run


def test_pairings_in_run_names_and_what_they_take():
    assert resolved().pairing == "independent" and resolved().name == "fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-s2keep-bs128-e15-seed0"
    assert resolved(pairing="previous").name == "fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-previous-bs128-e15-seed0"
    assert resolved(method="ce", pairing="split") == resolved(method="ce")  # CE draws no S2
    assert resolved(pairing="detached", second_batch_size=64).second_batch_size == 64
    for pairing, what in (("previous", "the previous S1"), ("split", "half the batch")):
        with pytest.raises(ValueError, match=f"Expected no `second_batch_size` with pairing '{pairing}', whose S2 is "
                                             f"{what} \\(--batch-size samples\\), but got 64"):
            resolved(pairing=pairing, second_batch_size=64)
    with pytest.raises(ValueError, match="Expected `pairing` in independent, detached, previous, split, ranks, but got 'ring'"):
        resolved(pairing="ring")
    assert resolved(pairing="ranks", world_size=2).name.endswith("-itra-c-lam0.6-warmr0.1-ranks-bs128-ws2-e15-seed0")


def test_a_library_model_is_named_without_its_colon():
    assert resolved(dataset="digits", model="timm:resnet18", method="ce").name == "digits-timm-resnet18-ce-bs128-e15-seed0"


ROOT = Path(__file__).resolve().parent.parent


def test_the_run_name_order_is_its_own_not_the_fields_order():
    """Run names follow `RUN_NAME`, a file format, whatever order `TrainConfig` lists its fields in (grouped for
    reading, `GROUPS`): these names are the ones itra wrote when the fields were in the run name's order."""
    every = resolved(dataset="digits", model="vit", method="itra-c", lam=0.3, bandwidth="class", match="mmd2",
                     lam_warmup=100, pairing="detached", exits="shared", exit_weights="uniform", match_at="every",
                     match_ranks="global", batch_size=64, second_batch_size=32, world_size=2, epochs=3, train_subset=500,
                     test_subset=200, val_split=100, label_noise=0.2, lr=0.01, momentum=0.8, weight_decay=0.001,
                     compactness_every=10, precision="bf16", seed=1, device="cpu", workers=2)
    assert every.name == ("digits-vit-itra-c-lam0.3-bwclass-mmd2-warm100-detached-s2keep-exitsshared-wuniform-atevery-"
                          "ranksglobal-bs64-bs232-ws2-e3-n500-test200-val100-noise0.2-lr0.01-mom0.8-wd0.001-probe10-bf16-"
                          "seed1")
    assert resolved(dataset="wordnet", model="minilm", method="lsr", smoothing=0.2, optimizer="adamw", max_length=64,
                    seed=2).name == "wordnet-minilm-lsr-eps0.2-bs128-e15-adamw-len64-seed2"
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    assert fields == [name for _, _, names in GROUPS for name in names]  # the dataclass is in its groups' order
    assert fields != [name for name, _ in RUN_NAME] + list(LOCATION_FIELDS)  # ... which is not the run name's
    assert sorted(FIELD_ORDER) == sorted(fields) and len(set(FIELD_ORDER)) == len(fields)


def test_committed_run_directories_read_as_the_runs_they_are():
    from itra import rundir

    run_dirs = sorted(path.parent for path in (ROOT / "benchmarks/runs").rglob(rundir.CONFIG))
    assert len(run_dirs) >= 40
    for run_dir in run_dirs:
        assert rundir.read_config(run_dir).name == run_dir.name, run_dir


def test_a_config_json_written_before_a_field_is_the_run_it_was(tmp_path):
    """Written before --lam-warmup-ratio and --s2-state: a 300-step ramp and S2's pass that updates the model's state,
    under its name of then; a run of today's default ramp is another run, with another name."""
    from itra import rundir
    from itra.warmup import warmup_steps

    values = {name: value for name, value in dataclasses.asdict(TrainConfig()).items() if name not in WRITTEN_BEFORE}
    values["lam_warmup"] = 300  # the default then
    (tmp_path / rundir.CONFIG).write_text(json.dumps({**values, "run_format": rundir.RUN_FORMAT}))
    old = rundir.read_config(tmp_path)
    assert (old.lam_warmup, old.lam_warmup_ratio, old.s2_state) == (300, None, "update")
    assert old.name == "fashion-mnist-cnn-itra-c-lam0.6-bs128-e15-seed0"
    assert warmup_steps(old.lam_warmup, old.lam_warmup_ratio, 1000) == 300
    new = resolved()
    assert (new.lam_warmup, new.lam_warmup_ratio) == (None, 0.1) and new.name != old.name
    assert warmup_steps(new.lam_warmup, new.lam_warmup_ratio, 1000) == 100
    assert resolved(lam_warmup=100, lam_warmup_ratio=0.2).lam_warmup_ratio is None  # fixed steps win
    assert resolved(lam_warmup_ratio=0.2).lam_warmup is None and resolved(method="ce").lam_warmup_ratio is None
    # a ramp of 300 steps and S2's pass that updates the state, given today: the old run, under its old name
    assert resolved(lam_warmup=300, s2_state="update") == old
    assert resolved(lam_warmup=299, s2_state="update").name == "fashion-mnist-cnn-itra-c-lam0.6-warm299-bs128-e15-seed0"
    assert new.s2_state == "keep" and new.name == "fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-s2keep-bs128-e15-seed0"
