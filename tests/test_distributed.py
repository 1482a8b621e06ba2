"""Training on several processes: the `Dist` helpers alone, then 2 gloo processes spawned from pytest (DDP
equals one process on the global batches; a killed and resumed run equals an uninterrupted one; only rank 0
writes), and one job through torchrun itself.

The equivalence runs use a small MLP without batch norm: with batch norm each rank normalises its own slice,
which one process on the global batch does not (README, "Training on many GPUs"). The resume runs use the
real CNN, batch norm included, and an augmentation, so per-rank random states and buffers are exercised.
"""
import dataclasses
import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from itra import rundir
from itra.config import TrainConfig
from itra.distributed import Dist, sum_over_ranks
from itra.objective import build_objective
from itra.models import Classifier
from tests.helpers import resolved

pytest.importorskip("sklearn")  # the digits dataset
# one test worker runs this file (pytest-xdist): the spawned 2-process job of `ddp_runs` is then started once
pytestmark = pytest.mark.xdist_group("ddp_runs")

WORLD, M, TRAIN = 2, 16, 192  # per-rank batch M; TRAIN is a multiple of WORLD * M: one process has no partial batch
JOB_SECONDS = 600  # the spawned job takes about 20 s; past this a rank is stuck
CASES = {"ce": {"method": "ce"}, "center": {"method": "center", "lam": 0.5},
         "itra-c-local": {"method": "itra-c", "lam": 1.0},
         "itra-c-global": {"method": "itra-c", "lam": 1.0, "match_ranks": "global"},
         "itra-c-split-global": {"method": "itra-c", "lam": 1.0, "match_ranks": "global", "pairing": "split"},
         "itra-c-ranks": {"method": "itra-c", "lam": 1.0, "pairing": "ranks"}}
WRITERS = ("write_atomic", "write_json", "append_metrics", "rewrite_metrics", "save_checkpoint")


def equivalence_config(case: str, **changes) -> TrainConfig:
    values = dict(dataset="digits", batch_size=M, epochs=1, train_subset=TRAIN, test_subset=100, lr=0.1, device="cpu",
                  lam_warmup=0, compactness_every=2, world_size=WORLD, **CASES[case])
    return resolved(**{**values, **changes})


def resume_config() -> TrainConfig:
    return resolved(dataset="digits", method="itra-c", match_ranks="global", pairing="previous", batch_size=M,
                       epochs=3, train_subset=TRAIN, test_subset=100, lam_warmup=4, device="cpu", world_size=WORLD)


def mlp() -> Classifier:
    torch.manual_seed(0)
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()), nn.Linear(32, 10))


def untrained_objective():
    return build_objective(resolved(dataset="digits", method="ce", device="cpu"), mlp(), 10)


def odd_test_set():
    """359 test images: the two ranks' shards differ in size."""
    from itra.data.batches import subset_by_index

    return subset_by_index(digits().test, torch.arange(359))


def split_sets():
    """Splits of 359 test and 301 validation images, whose validation labels are the untrained model's own
    predictions for two thirds of them: a temperature strictly inside its range."""
    from itra.data.batches import subset_by_index
    from itra.evaluate import predict

    val = subset_by_index(digits().train, torch.arange(301))
    _, logits, labels = predict(untrained_objective(), val, torch.device("cpu"))
    labels[:200] = logits[:200].argmax(dim=1)
    val = torch.utils.data.TensorDataset(val.tensors[0], labels)
    return dataclasses.replace(digits(), test=odd_test_set(), val=val)


def digits(augmented: bool = False):
    from itra.data.digits import load_digits
    from itra.data.transforms import random_crop

    splits = load_digits()
    return dataclasses.replace(splits, train_transform=lambda x, g: random_crop(x, 1, g)) if augmented else splits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    """One rank of the spawned job: every DDP run the tests below check, into `out`."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pathlib import Path

    from itra.distributed import setup, shutdown
    from itra.evaluate import evaluate_splits
    from itra.experiments.runs import build_model
    from itra.objective import Objective
    from itra.train import fit

    dist = setup()
    written = []
    if rank:  # any write by another rank than 0 is recorded, and reported by rank 0
        for name in WRITERS:
            setattr(rundir, name, lambda path, *args, name=name: written.append(f"{name} {path}"))
    out = Path(out)
    splits = digits()
    for case in CASES:
        fit(equivalence_config(case), splits, mlp(), out / "ddp" / case, progress=False)
    metrics = evaluate_splits(untrained_objective(), split_sets(), torch.device("cpu"), dist)  # each rank its shards
    if dist.is_main:
        (out / "sharded_evaluation.json").write_text(json.dumps(metrics))

    config, splits = resume_config(), digits(augmented=True)
    fit(config, splits, build_model(config, splits), out / "uninterrupted", progress=False)
    calls, forward = [0], Objective.forward

    def killed_in_epoch_2(self, *args):
        calls[0] += 1
        if calls[0] > TRAIN // (WORLD * M):
            raise KeyboardInterrupt
        return forward(self, *args)

    Objective.forward = killed_in_epoch_2
    try:
        fit(config, splits, build_model(config, splits), out / "resumed", progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        Objective.forward = forward
    fit(config, splits, build_model(config, splits), out / "resumed", resume=True, progress=False)

    from itra.callbacks import Callback, RunFailed

    class FailsOnRank1(Callback):
        def on_step(self, state, terms):
            if state.dist.rank == 1 and state.step == 3:
                raise RunFailed("rank 1 gave up at step 3")

    summary = fit(equivalence_config("ce", epochs=2), digits(), mlp(), out / "failed", progress=False,
                  callbacks=[FailsOnRank1()])
    assert summary["status"] == "failed" and summary["reason"] == "rank 1 gave up at step 3", summary

    from itra.errors import BadValue

    try:  # the test holds this run directory's lock: rank 0 is refused, and so must be every other rank
        fit(equivalence_config("ce"), digits(), mlp(), out / "locked", progress=False)
        refusal = None
    except BadValue as error:
        refusal = str(error)
    refusals = dist.gather_to_main(refusal)

    every = dist.gather_to_main(written)
    if dist.is_main:
        (out / "other_ranks_wrote.json").write_text(json.dumps(every[1:]))
        (out / "locked_refusals.json").write_text(json.dumps(refusals))
    shutdown()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """The run directories of one spawned 2-process job (gloo, a free port on localhost)."""
    out = tmp_path_factory.mktemp("ddp")
    (out / "locked").mkdir()
    handle = os.open(out / "locked", os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)  # as another itra process training into it would
    try:
        job = mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, start_method="spawn", join=False)
        deadline = time.monotonic() + JOB_SECONDS
        while not job.join(timeout=5):  # a rank's exception is raised here
            if time.monotonic() > deadline:  # a rank waiting for another for ever fails the tests, not hangs them
                for process in job.processes:
                    process.kill()
                pytest.fail(f"the spawned {WORLD}-process job did not end in {JOB_SECONDS} s: a rank waits for another")
    finally:
        os.close(handle)
    return out


def model_state(run_dir):
    return rundir.load_checkpoint(run_dir)["model"]


def one_process_on_global_batches(case: str) -> dict[str, torch.Tensor]:
    """The reference: one process, global batches of WORLD * M from the same streams, and the loss DDP's mean of
    gradients optimises, the mean over the WORLD slices r of CE(S1_r) + λ Match(S1_r, S2_r) ("local") or
    Match(S1_r, S2) ("global": the whole S2; with "split", S2_r is the second half of slice r, S1_r the first
    and the CE is over both; with the "ranks" pairing S2 is the other slices of S1). The optimiser and schedule are
    `fit`'s."""
    from itra.data.splits import run_splits
    from itra.pairing import samples_per_step
    from itra.train import build_optimizer, step_loader

    config = equivalence_config(case)
    # "ranks" draws no S2: the reference's loader is that of another pairing that draws none, at the global batch
    pairing = "previous" if config.pairing == "ranks" else config.pairing
    single = dataclasses.replace(config, batch_size=WORLD * M, world_size=1, match_ranks="local", pairing=pairing)
    splits = digits()
    train = run_splits(splits, config.train_subset, None, 0.0, config.seed).train
    objective = build_objective(single, mlp(), splits.num_classes).train()
    loader = step_loader(train, objective, samples_per_step(single.pairing, single.batch_size),
                         single.second_batch_size, single.seed, single.workers)
    optimizer, schedule = build_optimizer(single, objective.parameters(), len(loader) * single.epochs)
    for batch in loader:
        if config.pairing == "split":  # batch: S1 of 2 * WORLD * M; no batch norm, so one pass is every slice's
            (x, y), half = batch, len(batch[1]) // (2 * WORLD)
            features = objective.model.extractor(x).chunk(WORLD)
            labels = y.chunk(WORLD)
            h2, y2 = torch.cat([h[half:] for h in features]), torch.cat([y_r[half:] for y_r in labels])
            losses = [torch.nn.functional.cross_entropy(objective.model.head(h), y_r)
                      + config.lam * objective.regularizer(h[:half], y_r[:half], h2, y2)
                      for h, y_r in zip(features, labels)]
        elif config.pairing == "ranks":  # S2 of slice r: the other slices
            (x, y) = batch
            features, labels = objective.model.extractor(x).chunk(WORLD), y.chunk(WORLD)
            losses = [torch.nn.functional.cross_entropy(objective.model.head(h), y_r) + config.lam * objective.regularizer(
                h, y_r, torch.cat(features[:r] + features[r + 1:]), torch.cat(labels[:r] + labels[r + 1:]))
                for r, (h, y_r) in enumerate(zip(features, labels))]
        else:
            (x1, y1), (x2, y2) = batch
            slices1, slices2 = zip(x1.chunk(WORLD), y1.chunk(WORLD)), zip(x2.chunk(WORLD), y2.chunk(WORLD))
            losses = [objective(first, (x2, y2) if config.match_ranks == "global" else second)["loss"]
                      for first, second in zip(slices1, slices2)]
        optimizer.zero_grad()
        torch.stack(losses).mean().backward()
        optimizer.step()
        schedule.step()
    return objective.model.state_dict()


@pytest.mark.parametrize("case", list(CASES))
def test_ddp_equals_one_process_on_the_concatenated_global_batches(ddp_runs, tmp_path, case):
    from itra.train import fit

    ddp = model_state(ddp_runs / "ddp" / case)
    if case in ("ce", "center"):  # their loss over the global batch is the mean over its slices: `fit` itself
        config = dataclasses.replace(equivalence_config(case), batch_size=WORLD * M, world_size=1)
        fit(config, digits(), mlp(), tmp_path, progress=False)
        reference = model_state(tmp_path)
    else:
        reference = one_process_on_global_batches(case)
    for name, value in reference.items():
        torch.testing.assert_close(ddp[name], value, atol=1e-5, rtol=0, msg=f"{case}: {name}")
    start = mlp().state_dict()
    assert max((ddp[name] - start[name]).abs().max() for name in ddp) > 1e-2  # it trained
    summary = rundir.read_summary(ddp_runs / "ddp" / case)
    assert summary["world_size"] == WORLD and summary["status"] == "finished"
    assert rundir.read_config(ddp_runs / "ddp" / case).world_size == WORLD


def test_the_global_match_is_another_update_than_the_local_one(ddp_runs):
    local, gathered = (model_state(ddp_runs / "ddp" / case) for case in ("itra-c-local", "itra-c-global"))
    assert max((local[name] - gathered[name]).abs().max() for name in local) > 1e-4


def test_centres_are_those_of_one_process(ddp_runs, tmp_path):
    saved = rundir.load_checkpoint(ddp_runs / "ddp" / "center")["regularizer"]["centers"]
    from itra.train import fit

    config = dataclasses.replace(equivalence_config("center"), batch_size=WORLD * M, world_size=1)
    fit(config, digits(), mlp(), tmp_path, progress=False)
    torch.testing.assert_close(saved, rundir.load_checkpoint(tmp_path)["regularizer"]["centers"], atol=1e-5, rtol=0)
    assert saved.abs().sum() > 0


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(ddp_runs):
    uninterrupted, resumed = (rundir.load_checkpoint(ddp_runs / name) for name in ("uninterrupted", "resumed"))
    assert resumed["epoch"] == uninterrupted["epoch"] == 3
    for name, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    main, other = resumed["ranks"]  # each rank's own random states and kept batch
    assert not torch.equal(other["random"]["augment"], main["random"]["augment"])
    assert not torch.equal(other["previous_batch"]["labels"], main["previous_batch"]["labels"])
    rows = [[{k: v for k, v in row.items() if k != "elapsed_s"} for row in rundir.read_metrics(ddp_runs / name)]
            for name in ("uninterrupted", "resumed")]
    assert rows[0] == rows[1] and [row["epoch"] for row in rows[0]] == [1, 2, 3]


def test_sharded_evaluation_equals_one_process_on_the_whole_set(ddp_runs):
    """Test and validation metrics, and the temperature fitted on the validation shards (its NLL sums summed
    over ranks), equal one process's on the whole sets, to the float32 rounding of the logits: a shard's forward
    pass need not round as the whole set's (MKL_CBWR=COMPATIBLE's BLAS picks kernels by the batch's size: logits
    1e-7 apart; MKL's AVX-512 path gives equal ones), so 1e-6 relative: a shard left out or counted twice would
    move the means by the difference between the shards, far more."""
    from itra.calibration import TEMPERATURE_RANGE
    from itra.evaluate import evaluate_splits

    sharded = json.loads((ddp_runs / "sharded_evaluation.json").read_text())
    whole = evaluate_splits(untrained_objective(), split_sets(), torch.device("cpu"))
    assert sharded == pytest.approx(whole, rel=1e-6, abs=1e-9) and sharded.keys() == whole.keys()
    assert {"val_cross_entropy", "ts_test_cross_entropy"} <= whole.keys()
    assert TEMPERATURE_RANGE[0] < whole["temperature"] < TEMPERATURE_RANGE[1]


def test_only_rank_0_writes(ddp_runs):
    assert json.loads((ddp_runs / "other_ranks_wrote.json").read_text()) == [[]]
    assert rundir.read_summary(ddp_runs / "resumed")["status"] == "finished"


def test_a_failure_on_one_rank_ends_the_run_on_every_rank(ddp_runs):
    summary = rundir.read_summary(ddp_runs / "failed")  # rank 0 writes rank 1's reason; no epoch finished
    assert summary["status"] == "failed" and summary["reason"] == "rank 1 gave up at step 3" and summary["epoch"] == 0


@pytest.mark.slow
def test_torchrun_trains_one_run_on_two_processes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD), "-m",
               "itra", "train", "--dataset", "digits", "--method", "itra-c", "--match-ranks", "global", "--batch-size",
               "32", "--epochs", "1", "--train-subset", "256", "--test-subset", "100", "--device", "cpu", "--quiet",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == "digits-cnn-itra-c-lam0.6-warmr0.1-s2keep-ranksglobal-bs32-ws2-e1-n256-test100-seed0"
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone prints the result
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == WORLD
    assert rundir.read_summary(run_dir)["world_size"] == WORLD


def test_a_run_of_two_processes_does_not_resume_in_one(tmp_path, capsys):
    from itra.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.write_config(run_dir, resolved(dataset="digits", method="ce", train_subset=256, world_size=2))
    assert main(["train", "--resume", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert "trains on 2 process(es)" in error and "torchrun --nproc-per-node 2" in error and error.count("\n") == 1


def test_one_process_is_a_dist_whose_helpers_are_the_identity():
    dist, values = Dist(), torch.tensor([[1.5, 0.5]], dtype=torch.float64)
    assert dist.is_main and dist.world_size == 1
    assert dist.mean(values) is values and dist.first(None) is None and dist.first(("x", "failed")) == ("x", "failed")
    sums = torch.randn(5, 3)
    assert sum_over_ranks(sums) is sums and dist.gather_to_main(3) == [3] and dist.on_main(len, "abc") == 3
    assert torch.equal(dist.shard(5), torch.arange(5))


def test_the_ranks_pairing_needs_other_processes():
    from itra.losses import ITRALoss
    from itra.objective import Objective

    with pytest.raises(ValueError, match="Expected --pairing ranks under torchrun with 2 or more processes"):
        resolved(pairing="ranks")
    objective = Objective(mlp(), ITRALoss(), lam=1.0, pairing="ranks")  # the library: a clear error at the first step
    with pytest.raises(ValueError, match="run under torchrun with 2 or more processes"):
        objective((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])))


def test_shards_split_a_range_in_rank_order():
    shards = [Dist(rank, 3).shard(10) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 3, 3] and torch.equal(torch.cat(shards), torch.arange(10))


def test_a_run_directory_another_process_holds_is_refused_on_every_rank(ddp_runs):
    """Under torchrun only rank 0 holds the run directory; its refusal is every rank's, in one line, where the
    other ranks used to wait for rank 0 in their next collective for ever."""
    refusals = json.loads((ddp_runs / "locked_refusals.json").read_text())
    assert len(refusals) == WORLD
    assert all(r and "is being trained by another itra process" in r and "\n" not in r for r in refusals)
