"""ITRAModule and PairedDataModule against itra's own training step and PairedLoader, on a tiny CNN, on the CPU."""
import copy
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

pytest.importorskip("lightning", reason='PyTorch Lightning is an optional extra: pip install "itra[lightning]"')
from lightning.pytorch import Callback, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from itra import ITRALoss, PairedLoader  # noqa: E402
from itra.integrations.lightning import ITRAModule, PairedBatches, PairedDataModule  # noqa: E402
from itra.objective import Objective  # noqa: E402
from itra.metrics import classification_metrics  # noqa: E402
from itra.models.cnn import small_cnn  # noqa: E402
from itra.train import build_optimizer, train_step  # noqa: E402
from tests.helpers import resolved

SEED, LR, LAM, NUM_CLASSES, BATCH = 3, 0.5, 0.7, 3, 8
ROOT = Path(__file__).resolve().parents[2]


def images(size: int = 24, seed: int = 0) -> TensorDataset:
    """`size` random 1x8x8 images with labels in [0, 3)."""
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(size, 1, 8, 8, generator=generator),
                         torch.randint(0, NUM_CLASSES, (size,), generator=generator))


def tiny_cnn():
    torch.manual_seed(0)
    return small_cnn(NUM_CLASSES, in_channels=1, feature_dim=16)


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=LR)


class Recorder(Callback):
    """Each training step's batch and logged values."""

    def __init__(self) -> None:
        self.batches, self.logs = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(batch)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.logs.append({name: float(value) for name, value in trainer.callback_metrics.items()})


def fit(module: ITRAModule, data: PairedDataModule, steps: int = -1, epochs: int | None = None, callbacks=(),
        ckpt_path: str | None = None, **trainer_args) -> Recorder:
    """Fit on the CPU, no logger or progress output; the recorded steps."""
    recorder = Recorder()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=epochs, logger=False,
                      enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      callbacks=[recorder, *callbacks], **trainer_args)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return recorder


def assert_same_state(model: torch.nn.Module, other: torch.nn.Module, tolerance: float = 1e-5) -> None:
    """Parameters and batch-norm buffers alike."""
    for (name, value), other_value in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(value, other_value, atol=tolerance, rtol=tolerance, msg=name)


def assert_same_batches(batches, expected) -> None:
    assert len(batches) == len(expected)
    for (first, second), (expected_first, expected_second) in zip(batches, expected):
        for tensor, other in zip((*first, *(second or ())), (*expected_first, *(expected_second or ()))):
            assert torch.equal(tensor, other)


@pytest.mark.parametrize("lam", [LAM, 0.0])
def test_one_step_equals_itra_train_step_on_the_same_pair(lam):
    """The first step draws PairedLoader's first (S1, S2) for the seed (S1 alone with lam=0), and its logged
    terms and its update are those of `itra.train.train_step` on itra's own objective."""
    model = tiny_cnn()
    reference = Objective(copy.deepcopy(model), ITRALoss(num_classes=NUM_CLASSES) if lam else None, lam, term="match")
    module = ITRAModule(model, lam=lam, lam_warmup=0, optimizer=sgd)
    (log,) = fit(module, PairedDataModule(images(), BATCH, seed=SEED), steps=1).logs
    loader = PairedLoader(images(), BATCH, seed=SEED, paired=lam > 0)
    first, second = next(iter(loader)) if lam else (next(iter(loader)), None)
    terms = train_step(reference, sgd(reference.parameters()), first, second)
    assert {name: log[f"train_{name}"] for name in terms} == pytest.approx(terms, abs=1e-5)
    assert log["lam"] == pytest.approx(lam) and ("train_match" in log) == (lam > 0)
    if lam:
        assert terms["match"] > 0
    assert_same_state(module.model, reference.model)


def test_an_epoch_with_the_default_optimizer_equals_itra_trains_loop():
    """Three steps with λ warming up over two and the default optimizer are itra's: `build_optimizer`'s SGD
    (Nesterov, weight decay) and cosine schedule over the run's steps, λ_t = λ · min(1, t / 2)."""
    model = tiny_cnn()
    reference = Objective(copy.deepcopy(model), ITRALoss(num_classes=NUM_CLASSES), LAM, term="match")
    module = ITRAModule(model, lam=LAM, lam_warmup=2)
    logs = fit(module, PairedDataModule(images(), BATCH, seed=SEED), epochs=1).logs
    loader = PairedLoader(images(), BATCH, seed=SEED)
    optimizer, schedule = build_optimizer(resolved(epochs=1, batch_size=BATCH), reference.parameters(), len(loader))
    for step, (first, second) in enumerate(loader, start=1):
        reference.lam = LAM * min(1.0, step / 2)
        terms = train_step(reference, optimizer, first, second)
        schedule.step()
        assert logs[step - 1]["train_loss"] == pytest.approx(terms["loss"], abs=1e-5)
    assert [log["lam"] for log in logs] == pytest.approx([LAM / 2, LAM, LAM])
    assert_same_state(module.model, reference.model)


def test_logged_terms_and_lam_warming_up_by_optimizer_step():
    module = ITRAModule(tiny_cnn(), lam=LAM, lam_warmup=4, optimizer=sgd)
    logs = fit(module, PairedDataModule(images(), BATCH // 2, seed=SEED), steps=2, accumulate_grad_batches=2).logs
    assert [log["lam"] for log in logs] == pytest.approx([LAM / 4, LAM / 4, LAM / 2, LAM / 2])
    for log in logs:
        assert {"train_ce", "train_match", "train_loss", "lam"} <= set(log)
        assert log["train_loss"] == pytest.approx(log["train_ce"] + log["lam"] * log["train_match"], abs=1e-6)


def test_by_default_lam_warms_up_over_a_fraction_of_the_estimated_stepping_batches():
    from itra.warmup import lam_at, warmup_steps

    module = ITRAModule(tiny_cnn(), lam=LAM, lam_warmup_ratio=0.5, optimizer=sgd)
    logs = fit(module, PairedDataModule(images(), BATCH, seed=SEED), steps=4).logs
    assert [log["lam"] for log in logs] == pytest.approx([lam_at(step, LAM, warmup_steps(None, 0.5, 4))
                                                          for step in range(1, 5)])
    assert [log["lam"] for log in logs] == pytest.approx([LAM / 2, LAM, LAM, LAM])


@pytest.mark.parametrize("s2_state, updates", [("update", 4), ("keep", 2)])
def test_s2s_pass_updates_the_running_statistics_only_with_update(s2_state, updates):
    module = ITRAModule(tiny_cnn(), lam=LAM, s2_state=s2_state, optimizer=sgd)
    fit(module, PairedDataModule(images(), BATCH, seed=SEED), steps=2)
    assert int(module.model.extractor[1].num_batches_tracked) == updates  # 2 steps: S1's passes, and S2's


def test_training_batches_are_paired_loaders_for_lightnings_epochs():
    """Two epochs in Lightning see PairedLoader's epochs 0 and 1; outside Lightning, PairedBatches iterates like
    PairedLoader (each pass the next epoch, `set_epoch` to choose one), pairs for the same seed the same."""
    recorded = fit(ITRAModule(tiny_cnn(), optimizer=sgd), PairedDataModule(images(), BATCH, seed=SEED), epochs=2)
    loader = PairedLoader(images(), BATCH, seed=SEED)
    epochs = [list(loader), list(loader)]
    assert_same_batches(recorded.batches, epochs[0] + epochs[1])
    assert not torch.equal(epochs[0][0][0][1], epochs[1][0][0][1])  # a new epoch, new batches

    batches = PairedDataModule(images(), BATCH, seed=SEED).train_dataloader()  # no trainer: one process, pairs
    assert len(batches) == 3
    assert_same_batches(list(batches), epochs[0])
    assert_same_batches(list(batches), epochs[1])
    batches.set_epoch(0)
    assert_same_batches(list(batches), epochs[0])
    assert_same_batches(list(PairedBatches(PairedLoader(images(), BATCH, seed=SEED))), epochs[0])


def test_the_datamodule_restores_the_place_of_the_training_batches():
    """A checkpoint's place, loaded before the training batches exist (DDP, one device) or after (FSDP, DeepSpeed)."""
    loader = PairedLoader(images(), BATCH, seed=SEED)
    list(loader)
    rest = list(loader)[2:]  # epoch 1 after its first 2 batches
    early = PairedDataModule(images(), BATCH, seed=SEED)
    early.load_state_dict({"epoch": 1, "drawn": 2})
    batches = early.train_dataloader()
    assert_same_batches(list(batches), rest)
    assert early.state_dict() == {"epoch": 2, "drawn": 0}
    late = PairedDataModule(images(), BATCH, seed=SEED)
    batches = late.train_dataloader()
    late.load_state_dict({"epoch": 1, "drawn": 2})
    assert_same_batches(list(batches), rest)


def test_without_the_match_s2_is_neither_drawn_nor_passed_and_s1_is_the_same():
    recorded = fit(ITRAModule(tiny_cnn(), lam=0.0, optimizer=sgd), PairedDataModule(images(), BATCH, seed=SEED),
                   epochs=1)
    expected = [(first, None) for first, _ in PairedLoader(images(), BATCH, seed=SEED)]
    assert_same_batches(recorded.batches, expected)


@pytest.mark.parametrize("rank", [0, 1])
def test_under_ddp_each_rank_draws_its_slice_of_the_global_batches(rank):
    """What each of 2 DDP ranks trains on (the datamodule asks the trainer for rank and world size): its slice of
    PairedLoader's global S1 and S2, no DistributedSampler. Without processes; the slow test below spawns them."""
    data = PairedDataModule(images(), BATCH // 2, seed=SEED)
    data.trainer = SimpleNamespace(global_rank=rank, world_size=2, lightning_module=ITRAModule(tiny_cnn()))
    loader = data.train_dataloader()
    assert not isinstance(loader, torch.utils.data.DataLoader)  # Lightning shards DataLoaders only
    batches = list(loader)
    assert_same_batches(batches, list(PairedLoader(images(), BATCH // 2, seed=SEED, rank=rank, world_size=2)))
    whole = list(PairedLoader(images(), BATCH, seed=SEED))
    for (first, second), (whole_first, whole_second) in zip(batches, whole):
        rows = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        assert torch.equal(first[1], whole_first[1][rows]) and torch.equal(second[1], whole_second[1][rows])


class SavesBatches(Callback):
    """Each rank's training batches, into `out/rank<r>.pt` (spawned ranks share no memory with the test)."""

    def __init__(self, out: Path) -> None:
        self.out, self.batches = out, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(batch)

    def on_train_end(self, trainer, module):
        torch.save(self.batches, self.out / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow  # two spawned processes that import Lightning: about 20 s on 2 busy CPU cores
def test_ddp_on_two_processes_matches_each_ranks_s1_against_its_own_s2(tmp_path):
    """`strategy="ddp_spawn"` on 2 gloo processes for 2 epochs: each rank trains on its PairedLoader slice for
    Lightning's epoch, and the update is that of the mean over ranks r of CE(S1_r) + λ Match(S1_r, S2_r), itra's
    "local" form, one process computing each rank's slice (and its batch norm) in a pass of its own."""
    model = tiny_cnn()
    reference = Objective(copy.deepcopy(model), ITRALoss(num_classes=NUM_CLASSES), LAM, term="match")
    module = ITRAModule(model, lam=LAM, lam_warmup=0, optimizer=sgd)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[SavesBatches(tmp_path)])
    trainer.fit(module, PairedDataModule(images(), BATCH // 2, seed=SEED))
    ranks = [PairedLoader(images(), BATCH // 2, seed=SEED, rank=rank, world_size=2) for rank in (0, 1)]
    steps = [pairs for _ in range(2) for pairs in zip(*ranks)]  # 2 epochs of 3 steps, a pair per rank
    for rank in (0, 1):
        assert_same_batches(torch.load(tmp_path / f"rank{rank}.pt"), [pairs[rank] for pairs in steps])
    optimizer = sgd(reference.parameters())
    for pairs in steps:
        loss = torch.stack([reference(first, second)["loss"] for first, second in pairs]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for (name, weight), expected in zip(module.model.named_parameters(), reference.model.parameters()):
        torch.testing.assert_close(weight, expected, atol=1e-5, rtol=1e-5, msg=name)  # rank 0's, sent back


# After step 2 (mid-epoch 0), 3 (the end of epoch 0, of 3 steps) or 5 (mid-epoch 1). The default optimizer reads
# `trainer.estimated_stepping_batches`, after which Lightning 2.6 restores no loader's state, only the datamodule's.
@pytest.mark.parametrize(("resume_at", "optimizer"), [(2, None), (3, None), (5, None), (2, sgd)])
def test_a_resumed_run_goes_on_with_the_batches_and_weights_of_an_uninterrupted_one(tmp_path, resume_at, optimizer):
    data = PairedDataModule(images(), BATCH, seed=SEED)
    checkpoints = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=1, save_top_k=-1)
    whole = ITRAModule(tiny_cnn(), lam=LAM, lam_warmup=4, optimizer=optimizer)
    uninterrupted = fit(whole, data, epochs=2, callbacks=[checkpoints])
    resumed = ITRAModule(tiny_cnn(), lam=LAM, lam_warmup=4, optimizer=optimizer)
    rest = fit(resumed, PairedDataModule(images(), BATCH, seed=SEED), epochs=2,
               ckpt_path=str(tmp_path / f"step={resume_at}.ckpt"))
    assert_same_batches(rest.batches, uninterrupted.batches[resume_at:])
    assert [log["lam"] for log in rest.logs] == [log["lam"] for log in uninterrupted.logs[resume_at:]]
    assert_same_state(resumed.model, whole.model, tolerance=1e-6)


def test_validation_and_test_metrics_are_itras_of_the_whole_set():
    module = ITRAModule(tiny_cnn(), optimizer=sgd)
    data = PairedDataModule(images(), BATCH, seed=SEED, val_set=images(20, seed=1), test_set=images(20, seed=2))
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    validated = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val_")}
    (tested,) = trainer.test(module, data, verbose=False)
    for metrics, (inputs, labels) in ((validated, images(20, seed=1).tensors), (tested, images(20, seed=2).tensors)):
        with torch.no_grad():
            expected = classification_metrics(module.model.eval()(inputs), labels)
        prefix = "val_" if metrics is validated else "test_"
        assert metrics == pytest.approx({prefix + name: value for name, value in expected.items()}, abs=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    ({"lam": -0.1}, "`lam` to be a finite number >= 0, but got -0.1"),
    ({"lam": float("nan")}, "`lam` to be a finite number >= 0, but got nan"),
    ({"lam_warmup": 2.5}, "`lam_warmup` to be an integer >= 0 (steps), but got 2.5"),
    ({"bandwidth": "median"}, "'median'"),
])
def test_bad_options_are_errors_naming_the_value(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ITRAModule(tiny_cnn(), **change)


def test_a_batch_that_is_not_a_pair_is_an_error_naming_the_fix():
    first, _ = next(iter(PairedLoader(images(), BATCH, seed=SEED)))
    with pytest.raises(ValueError, match="pairs .* but got a tuple: draw them with PairedDataModule"):
        ITRAModule(tiny_cnn()).training_step(first, 0)


def test_without_lightning_the_import_is_one_line_naming_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name == "lightning" or name.startswith("lightning.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "itra.integrations.lightning")
    with pytest.raises(ModuleNotFoundError) as error:
        importlib.import_module("itra.integrations.lightning")
    assert str(error.value) == 'itra.integrations.lightning needs PyTorch Lightning: pip install "itra[lightning]"'


def test_the_digits_example_runs_an_epoch(monkeypatch):
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn: pip install scikit-learn")
    spec = importlib.util.spec_from_file_location("lightning_digits", ROOT / "examples" / "lightning_digits.py")
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # its dataclass looks the module up
    spec.loader.exec_module(example)
    metrics = example.main(example.parse_args(["--smoke"]))
    assert 0 <= metrics["test_accuracy"] <= 100 and metrics["test_cross_entropy"] > 0


class Items(torch.utils.data.Dataset):
    """Eight items `make(x, y)` from 1x8x8 images x and labels y in [0, 3)."""

    def __init__(self, make):
        self.data, self.make = images(8), make

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.make(*self.data[index])


ITEM_DAMAGES = {  # what a user's dataset may give instead of (x, y)
    "a bare input": lambda x, y: x, "a dict": lambda x, y: {"x": x, "y": y}, "no label": lambda x, y: (x,),
    "nested": lambda x, y: ((x, y),), "swapped": lambda x, y: (y, x), "float label": lambda x, y: (x, float(y)),
    "text label": lambda x, y: (x, "cat"), "label of shape (1,)": lambda x, y: (x, y[None]),
    "label K": lambda x, y: (x, torch.tensor(NUM_CLASSES)), "label -1": lambda x, y: (x, torch.tensor(-1)),
    "input not a tensor": lambda x, y: (x.tolist(), y),
}
STEPS = {  # each of ITRAModule's steps, given one batch of the items (S1 and S2 alike)
    "training, S1": lambda module, batch, good: module.training_step((batch, good), 0),
    "training, S2": lambda module, batch, good: module.training_step((good, batch), 0),
    "training, lam 0": lambda module, batch, good: module.training_step((batch, None), 0),
    "validation": lambda module, batch, good: module.validation_step(batch, 0),
    "test": lambda module, batch, good: module.test_step(batch, 0),
}


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a step called without a Trainer
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("damage", [*ITEM_DAMAGES, None])
def test_a_batch_not_of_input_and_label_items_is_one_line_at_every_step(damage, step):
    """A batch collated from items that are not (inputs, label) with a label in [0, K): one line naming the batch
    and what to give, at each step, never an error from inside the model or the loss (None: good items pass)."""
    module = ITRAModule(tiny_cnn(), lam=0.0 if step == "training, lam 0" else LAM)
    module.on_validation_epoch_start()
    good = next(iter(torch.utils.data.DataLoader(Items(lambda x, y: (x, y)), batch_size=4)))
    if damage is None:
        STEPS[step](module, good, good)
        return
    batch = next(iter(torch.utils.data.DataLoader(Items(ITEM_DAMAGES[damage]), batch_size=4)))
    with pytest.raises(ValueError) as error:
        STEPS[step](module, batch, good)
    message = str(error.value)
    assert "\n" not in message and any(name in message for name in ("batch", "S1", "S2")), message
    assert type(error.value).__module__ == "itra.errors", message
