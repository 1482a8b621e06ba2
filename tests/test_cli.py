import json
import signal
import subprocess
import sys

import pytest

from itra import __version__, rundir
from itra.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as stop:
        assert stop.code == 0
    assert capsys.readouterr().out.strip() == f"itra {__version__}"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "itra.cli", "--help"], capture_output=True, text=True, check=True)
    assert "usage: itra" in out.stdout


@pytest.mark.slow
def test_reproduce_smoke_end_to_end(tmp_path, capsys):
    """The README's main job in its CI size: real Fashion-MNIST subset, all four methods, 3 seeds."""
    import pytest

    from itra.data.fashion_mnist import DEFAULT_DIR

    if not DEFAULT_DIR.exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    assert main(["reproduce", "fashion-mnist", "--smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    for label in ("Baseline (CE)", "LSR", "Center", "ITRA-c", "92.57"):
        assert label in out
    table = tmp_path / "reproduce-fashion-mnist-cnn-smoke" / "table.md"
    assert table.exists() and len(list(tmp_path.glob("fashion-mnist-cnn-*-seed*"))) == 12


def test_train_and_resume_via_cli(tmp_path, capsys):
    import pytest

    from itra.data.fashion_mnist import DEFAULT_DIR

    if not DEFAULT_DIR.exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    flags = ["train", "--method", "itra", "--epochs", "1", "--train-subset", "256", "--test-subset", "128",
             "--batch-size", "64", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    run_dir = next(tmp_path.iterdir())
    assert (run_dir / "summary.json").exists() and "test accuracy" in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0  # finished: nothing left, same summary


def test_a_bool_field_is_a_switch_in_train_and_sweep():
    from itra.cli import build_parser
    from itra.config import TrainConfig

    parser = build_parser()
    assert "tensorboard" not in vars(parser.parse_args(["train"])) and TrainConfig().tensorboard is False  # not given:
    # the field's default, and known as not given (--resume refuses a flag given at any value)
    assert parser.parse_args(["train", "--tensorboard"]).tensorboard is True
    assert parser.parse_args(["sweep"]).tensorboard == [False]
    assert parser.parse_args(["sweep", "--tensorboard"]).tensorboard == [True]  # a grid of one value
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--tensorboard", "false"])  # a switch takes no value


def test_bad_flags_give_one_line(capsys):
    assert main(["train", "--method", "mixup"]) == 2
    assert "Expected `method` in ce, lsr, center, itra, itra-c, but got 'mixup'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", [["cifar10", "--model", "vgg13"], ["ag-news", "--model", "distilbert-base-uncased"]])
def test_no_network_for_a_hub_dataset_is_one_line(monkeypatch, capsys, preset):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["reproduce", *preset, "--smoke", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the network" in err


WORDNET = pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/wordnet/data.noun").exists(),
                             reason="apt-get install wordnet-base")


@pytest.mark.slow
@WORDNET
def test_train_a_text_classifier_on_real_wordnet_glosses(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--dataset", "wordnet", "--model", "minilm", "--method", "itra-c", "--lam", "0.5",
                 "--optimizer", "adamw", "--lr", "5e-5", "--epochs", "1", "--batch-size", "16", "--max-length", "16",
                 "--train-subset", "64", "--test-subset", "48", "--compactness-every", "2", "--out", str(tmp_path),
                 "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == "wordnet-minilm-itra-c-lam0.5-warmr0.1-s2keep-bs16-e1-n64-test48-adamw-lr5e-05-len16-probe2-seed0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_size"] == 64 and summary["test_size"] == 48 and summary["train_match"] > 0
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in row["compactness"]] == [2, 4]


@WORDNET
def test_a_text_dataset_with_an_image_model_is_a_clear_error(capsys):
    assert main(["train", "--dataset", "wordnet", "--model", "cnn", "--quiet"]) == 2
    assert "wordnet is a text dataset" in capsys.readouterr().err


# ---------------------------------------------------------------- reproducibility, kills, bad input
from tests.helpers import needs_fmnist  # noqa: E402, resolved
TINY = ["train", "--method", "itra-c", "--epochs", "2", "--train-subset", "256", "--test-subset", "128",
        "--batch-size", "64", "--compactness-every", "3", "--lam-warmup", "4", "--quiet"]  # 4 steps per epoch, λ full from step 4


def itra_process(*args: str, kill_at_step: int | None = None) -> subprocess.CompletedProcess:
    """`python -m itra ARGS` in a process of its own; with `kill_at_step`, the process SIGKILLs itself
    as training step `kill_at_step` begins (no exception, no clean-up: what a crash or `kill -9` does)."""
    if kill_at_step is None:
        command = [sys.executable, "-m", "itra", *args]
    else:
        command = [sys.executable, "-c", (
            "import os, signal, sys, itra.train as t\n"
            "step, original = [0], t.train_step\n"
            "def counted(*a):\n"
            "    step[0] += 1\n"
            f"    if step[0] == {kill_at_step}: os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return original(*a)\n"
            "t.train_step = counted\n"
            "from itra.cli import main\n"
            "sys.exit(main(sys.argv[1:]))"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def metrics_without_times(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key != "elapsed_s"} for row in rows]


@pytest.mark.slow
@needs_fmnist
def test_the_same_command_in_two_processes_gives_the_same_run(tmp_path):
    for out in ("a", "b"):
        assert itra_process(*TINY, "--out", str(tmp_path / out)).returncode == 0
    (run_a,), (run_b,) = (list((tmp_path / out).iterdir()) for out in ("a", "b"))
    assert run_a.name == run_b.name
    rows = metrics_without_times(run_a)
    assert len(rows) == 2 and rows == metrics_without_times(run_b)
    assert len(rows[0]["compactness"]) == 1 and rows[0]["train_match"] > 0


@pytest.mark.slow
@needs_fmnist
def test_a_run_killed_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path):
    assert itra_process(*TINY, "--out", str(tmp_path / "whole")).returncode == 0
    killed = itra_process(*TINY, "--out", str(tmp_path / "killed"), kill_at_step=6)  # in the middle of epoch 2
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / "killed").iterdir()
    assert [row["epoch"] for row in metrics_without_times(run_dir)] == [1] and not (run_dir / "summary.json").exists()
    assert itra_process(*TINY, "--out", str(tmp_path / "killed")).returncode == 0  # the same command again
    (whole,) = (tmp_path / "whole").iterdir()
    assert metrics_without_times(run_dir) == metrics_without_times(whole)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, whole)]
    assert [{k: v for k, v in s.items() if k != "elapsed_s"} for s in summaries][0] == \
        {k: v for k, v in summaries[1].items() if k != "elapsed_s"}


@needs_fmnist
@pytest.mark.parametrize("flag, values", [("--lr", "0.01,0.5"), ("--bandwidth", "class,batch")])
def test_a_sweep_over_any_field_gives_a_run_and_a_row_per_value(tmp_path, capsys, flag, values):
    flags = ["sweep", "--method", "itra-c", flag, values, "--epochs", "1", "--train-subset", "128", "--test-subset",
             "64", "--batch-size", "64", "--seeds", "1", "--out", str(tmp_path), "--quiet"]
    assert main(flags) == 0
    assert len(list(tmp_path.iterdir())) == 2
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fashion-mnist")]
    assert len(rows) == 2


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--train-subset", "-5"], "Expected `train_subset` to be an integer larger than 0, but got -5"),
    (["--train-subset", "0"], "Expected `train_subset` to be an integer larger than 0, but got 0"),
    (["--test-subset", "0"], "Expected `test_subset` to be an integer larger than 0, but got 0"),
    (["--lam", "nan"], "Expected `lam` to be a finite number, but got nan"),
    (["--lr", "nan"], "Expected `lr` to be a finite number, but got nan"),
])
def test_bad_values_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    assert main(["train", *flags, "--out", str(tmp_path), "--quiet"]) == 2
    assert message in one_error_line(capsys) and not any(tmp_path.iterdir())


def test_a_cuda_device_without_a_gpu_is_one_line_before_loading_data(tmp_path, capsys, monkeypatch):
    import torch

    import itra.experiments.runs as runs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runs, "load_splits", lambda config: pytest.fail("data loaded before the device was checked"))
    assert main(["train", "--device", "cuda", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--device cuda: this machine has no CUDA GPU" in one_error_line(capsys) and not any(tmp_path.iterdir())


def test_compile_without_a_compiler_is_one_line_before_loading_data(tmp_path, capsys, monkeypatch):
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    import itra.experiments.runs as runs

    def no_compiler():
        raise InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    monkeypatch.setattr(runs, "load_splits", lambda config: pytest.fail("data loaded before the compiler was checked"))
    assert main(["train", "--compile", "--device", "cpu", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--compile on the CPU needs a C++ compiler" in one_error_line(capsys) and not any(tmp_path.iterdir())


def test_pairing_and_compile_are_flags():
    from itra.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--pairing", "split", "--compile"])
    assert args.pairing == "split" and args.compile is True
    assert parser.parse_args(["sweep", "--pairing", "independent,previous"]).pairing == ["independent", "previous"]


@needs_fmnist
def test_a_diverged_run_fails_with_one_line_and_valid_json(tmp_path, capsys):
    assert main([*TINY, "--lr", "1e6", "--out", str(tmp_path)]) == 1
    assert "failed: diverged at step" in one_error_line(capsys)
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=pytest.fail)  # no NaN, no Infinity
    assert summary["status"] == "failed" and "lower --lr" in summary["reason"]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=pytest.fail)
    assert main([*TINY, "--lr", "1e6", "--out", str(tmp_path)]) == 1  # an ended run is read back, still failed


@needs_fmnist
def test_a_torn_metrics_line_is_dropped_on_resume_and_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    whole = metrics_without_times(run_dir)
    (run_dir / "summary.json").unlink()  # as if killed after the last checkpoint, while writing a metrics line
    with open(run_dir / "metrics.jsonl", "a") as log:
        log.write('{"epoch": 3, "train_c')
    capsys.readouterr()
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    assert "dropped a torn last line" in capsys.readouterr().err and metrics_without_times(run_dir) == whole

    (run_dir / "summary.json").unlink()
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert f"{checkpoint}: cannot be read, it is truncated or damaged" in one_error_line(capsys)


@needs_fmnist
def test_ctrl_c_names_the_run_directory_to_resume(tmp_path, capsys, monkeypatch):
    import itra.train

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(itra.train, "train_step", interrupt)
    assert main([*TINY, "--out", str(tmp_path)]) == 130
    (run_dir,) = tmp_path.iterdir()
    assert f"itra train --resume {run_dir}" in capsys.readouterr().err


def test_python_dash_m_itra_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "itra", "train", "--help"], capture_output=True, text=True, check=True)
    assert "usage: itra train" in out.stdout


def test_train_help_shows_the_flags_in_the_configs_groups(capsys):
    from itra.config import GROUPS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    starts = [out.index(f"\n{title}:\n") for title, _, _ in GROUPS]
    assert starts == sorted(starts)  # data, model, method, matching, exits, optimisation, reproducibility, location
    for (_, _, names), start, end in zip(GROUPS, starts, [*starts[1:], len(out)]):
        for name in names:
            if name != "world_size":  # set by torchrun, not a flag
                assert f"  --{name.replace('_', '-')}" in out[start:end], name


def test_flags_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--seed", "1"])  # not --seeds 1
    assert exit_.value.code == 2 and "unrecognized arguments: --seed 1" in capsys.readouterr().err


def test_an_empty_grid_is_one_line_and_runs_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--lam", ",", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "',' holds no value" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_itra_with_a_batch_as_large_as_the_training_set_is_refused(tmp_path, capsys):
    flags = ["--dataset", "digits", "--train-subset", "256", "--batch-size", "256", "--epochs", "1", "--out", str(tmp_path)]
    assert main(["train", *flags, "--method", "itra-c", "--quiet"]) == 2
    assert "--batch-size 256 covers the whole training set of 256 samples" in one_error_line(capsys)
    assert not any(tmp_path.iterdir())
    assert main(["train", *flags, "--method", "ce", "--quiet"]) == 0  # CE has no S2: nothing to refuse


def test_the_warmup_warning_is_printed_with_quiet(tmp_path, capsys):
    flags = ["train", "--dataset", "digits", "--train-subset", "256", "--batch-size", "64", "--epochs", "1",
             "--out", str(tmp_path), "--quiet"]
    assert main([*flags, "--lam-warmup", "400"]) == 0
    assert "note: --lam-warmup 400 is longer than this run's 4 steps, so λ ends at 0.006" in capsys.readouterr().err
    assert main(flags) == 0  # the default ramp is a fraction of the run: it always ends
    assert "note:" not in capsys.readouterr().err


def test_a_run_given_twice_counts_once_and_one_run_in_two_places_is_one_line(tmp_path, capsys):
    import shutil

    from itra.experiments.runset import find_runs

    assert main(["train", "--dataset", "digits", "--method", "ce", "--epochs", "1", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert len(find_runs([tmp_path / "a", tmp_path / "a", tmp_path / "a" / "." ])) == 1
    run_dir = next((tmp_path / "a").iterdir())
    shutil.copytree(run_dir, tmp_path / "b" / run_dir.name)
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "report")]) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "a" / run_dir.name) in line and str(tmp_path / "b" / run_dir.name) in line


def test_a_run_that_raises_inside_torch_is_a_failed_run_and_the_sweep_goes_on(tmp_path, capsys):
    flags = ["--dataset", "digits", "--method", "ce", "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert main(["sweep", *flags, "--lr", "1e308,0.05", "--seeds", "1"]) == 1
    failed = rundir.read_summary(next(tmp_path.glob("*lr1e308*")))
    assert failed["status"] == "failed" and "overflow" in failed["reason"] and "lower --lr" in failed["reason"]
    assert rundir.read_summary(next(tmp_path.glob("*bs128-e1-seed0")))["status"] == "finished"
    assert "1 run(s) failed" in capsys.readouterr().err


def test_a_device_itra_does_not_train_on_is_one_line(tmp_path, capsys):
    assert main(["train", "--device", "mps", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--device mps: itra trains on cpu or cuda" in one_error_line(capsys) and not any(tmp_path.iterdir())


@pytest.mark.parametrize("command, flag", [
    (["report", "runs"], "--timing-steps"), (["report", "runs"], "--tsne-points"), (["reproduce", "digits"], "--seeds"),
    (["reproduce", "digits"], "--timing-steps"), (["sweep"], "--seeds")])
def test_counts_below_one_are_one_line_before_any_work(tmp_path, capsys, command, flag):
    with pytest.raises(SystemExit) as exit_:
        main([*command, flag, "0", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "expected an integer >= 1, but got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resuming_a_run_whose_metrics_were_deleted_is_one_line(tmp_path, capsys):
    from itra.data.digits import load_digits

    from tests.helpers import fit_first_epoch_then_interrupt, resolved

    config = resolved(dataset="digits", method="ce", epochs=2, batch_size=64, train_subset=256, device="cpu")
    run_dir = tmp_path / config.name
    fit_first_epoch_then_interrupt(config, load_digits(), run_dir)
    (run_dir / "metrics.jsonl").unlink()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "lacks the rows of epochs 1 that its checkpoint has trained" in one_error_line(capsys)
    assert rundir.read_summary(run_dir) is None  # nothing was trained or overwritten


def test_a_config_json_with_a_wrong_value_type_is_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--method", "ce", "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    values = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**values, "epochs": "ten"}))
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "config.json: Expected `epochs` to be int, but got 'ten'" in one_error_line(capsys)


@pytest.mark.parametrize("command", [["train"], ["sweep"], ["report", "runs"], ["similarity", "runs/x"],
                                     ["reproduce", "digits"]])
def test_an_out_that_is_a_file_or_read_only_is_one_line(tmp_path, capsys, monkeypatch, command):
    import os

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*command, "--out", str(blocker / "sub")]) == 2
    assert f"{blocker} is a file, not a folder" in one_error_line(capsys)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only folder is to anyone but root
    assert main([*command, "--out", str(tmp_path / "sub")]) == 2
    assert f"--out {tmp_path / 'sub'}: {tmp_path} is not writable" in one_error_line(capsys)
    assert not (tmp_path / "sub").exists()


def test_a_checkpoint_of_another_model_is_one_line(tmp_path, capsys):
    flags = ["--dataset", "digits", "--method", "ce", "--epochs", "1", "--quiet"]
    assert main(["train", *flags, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *flags, "--model", "vit", "--out", str(tmp_path / "b")]) == 0
    cnn, vit = next((tmp_path / "a").iterdir()), next((tmp_path / "b").iterdir())
    (vit / "checkpoint.pt").write_bytes((cnn / "checkpoint.pt").read_bytes())
    (vit / "summary.json").unlink()  # as an interrupted run
    assert main(["train", "--resume", str(vit)]) == 2
    assert f"{vit / 'checkpoint.pt'} is of another run than {vit.name}" in one_error_line(capsys)
    legacy = rundir.load_checkpoint(cnn)  # as itra up to 0.3.0 wrote it: no identity, checked by its model
    del legacy["identity"]
    rundir.save_checkpoint(vit, legacy)
    assert main(["train", "--resume", str(vit)]) == 2
    assert "checkpoint.pt holds weights of another model than vit" in one_error_line(capsys)


def test_fields_the_run_does_not_read_are_off_in_its_config_and_each_is_one_note(tmp_path, capsys):
    base = ["--dataset", "digits", "--epochs", "1", "--train-subset", "128", "--batch-size", "32", "--device", "cpu",
            "--out", str(tmp_path), "--quiet"]
    assert main(["train", *base, "--method", "ce", "--lam", "5", "--pairing", "split", "--max-length", "64",
                 "--match-ranks", "global", "--match-at", "every"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == ["note: --lam 5.0 is not read with --method ce; ignored",
                     "note: --pairing split is not read with --method ce; ignored",
                     "note: --match-at every is not read with --method ce; ignored",
                     "note: --match-ranks global is not read with --method ce; ignored",
                     "note: --max-length 64 is not read with the image dataset digits; ignored"]
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == "digits-cnn-ce-bs32-e1-n128-seed0"
    config = json.loads((run_dir / "config.json").read_text())
    assert [config[name] for name in ("lam", "pairing", "max_length", "match_ranks", "match_at", "smoothing")] == [None] * 6
    assert main(["train", *base, "--method", "ce"]) == 0 and len(list(tmp_path.iterdir())) == 1  # the same run
    assert "note:" not in capsys.readouterr().err

    # a sweep notes a flag only when no run of its grid reads it
    assert main(["sweep", *base, "--seeds", "1", "--method", "ce,itra-c", "--lam", "0.3", "--max-length", "64"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "ignored" in line]
    assert notes == ["note: --max-length 64 is not read with the image dataset digits; ignored"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["digits-cnn-ce-bs32-e1-n128-seed0",
                                                                "digits-cnn-itra-c-lam0.3-warmr0.1-s2keep-bs32-e1-n128-seed0"]


@pytest.mark.slow
def test_two_identical_trains_at_once_the_second_is_one_line(tmp_path):
    import subprocess
    import sys
    import time

    # far more epochs than the first process trains before it is killed: on a busy machine (or beside other test
    # workers) 30 epochs could end before the second process, which takes seconds to start, reached the lock
    argv = [sys.executable, "-m", "itra", "train", "--dataset", "digits", "--method", "ce", "--epochs", "10000",
            "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        config = tmp_path / "digits-cnn-ce-bs32-e10000-seed0" / "config.json"
        deadline = time.monotonic() + 120
        while not config.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert config.exists() and first.poll() is None
        second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "is being trained by another itra process" in second.stderr and second.stderr.count("\n") == 1
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize(("flags", "message"), [
    (["--train-subset", "100000"], "--train-subset 100000 is larger than the training set of digits (1437 samples): "
                                   "use at most 1437"),
    (["--test-subset", "361"], "--test-subset 361 is larger than the test set of digits (360 samples)"),
    (["--val-split", "437", "--train-subset", "1001"],
     "--train-subset 1001 is larger than the training set of digits (1000 samples left after --val-split)"),
])
def test_a_subset_larger_than_the_data_is_one_line_and_no_directory(tmp_path, capsys, flags, message):
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path), "--quiet",
                 *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_similarity_of_a_model_without_exits_and_a_missing_text_model_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["train", "--dataset", "digits", "--method", "ce", "--epochs", "1", "--train-subset", "128",
                 "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    assert main(["similarity", str(run_dir), "--out", str(tmp_path / "sim")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no layer-wise exits" in err and "itra similarity measures the layers of a model with exits" in err
    assert "\n" not in err and not (tmp_path / "sim").exists()

    assert main(["train", "--dataset", "wordnet", "--model", str(tmp_path / "no-such-model"), "--out",
                 str(tmp_path / "text"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--model {tmp_path / 'no-such-model'}: no such directory" in err and "\n" not in err
    assert not (tmp_path / "text").exists()


def test_a_text_model_that_does_not_load_is_one_line(tmp_path):
    from itra.models.text import load_tokenizer

    (tmp_path / "empty").mkdir()  # a directory without an encoder's files
    with pytest.raises(ValueError, match=r"--model .*empty does not load \(.*\): a file of the directory is missing") \
            as error:
        load_tokenizer(str(tmp_path / "empty"))
    assert "\n" not in str(error.value)


def test_a_user_error_is_one_line_and_anything_else_traces_back(monkeypatch, capsys, tmp_path):
    from itra import cli
    from itra.errors import BadValue, MissingFile, MissingPackage, NoNetwork, UserError

    for kind in (BadValue, MissingFile, MissingPackage, NoNetwork):
        assert issubclass(kind, UserError)
        monkeypatch.setattr(cli, "_train", lambda args, kind=kind: (_ for _ in ()).throw(kind("what to do")))
        assert main(["train", "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err == "itra train: error: what to do\n"
    monkeypatch.setattr(cli, "_train", lambda args: (_ for _ in ()).throw(ValueError("a bug of itra's")))
    with pytest.raises(ValueError, match="a bug of itra's"):  # not a user's mistake: it traces back
        main(["train", "--out", str(tmp_path)])
