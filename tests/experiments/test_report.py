"""The report from small real run directories that the test makes (short runs on Fashion-MNIST)."""
import pytest

from itra.cli import main
from itra.data.fashion_mnist import DEFAULT_DIR
from tests.experiments.test_runset import write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_report_from_small_runs(tmp_path):
    common = ["--epochs", "2", "--train-subset", "256", "--test-subset", "200", "--seeds", "2",
              "--compactness-every", "3", "--out", str(tmp_path / "runs"), "--quiet"]
    assert main(["sweep", "--method", "ce,itra-c", "--lam", "0.3,0.9", "--batch-size", "64", *common]) == 0
    assert main(["sweep", "--method", "itra-c", "--lam", "0.3", "--batch-size", "32", *common]) == 0
    assert main(["sweep", "--method", "ce,itra-c", "--lam", "0.3", "--batch-size", "64", "--label-noise", "0.4", *common]) == 0
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--timing-steps", "2", "--tsne-points", "150"]) == 0
    figures = ["ce_vs_lambda", "curves", "compactness", "batch_size", "label_noise", "tsne", "reliability"]
    for name in figures:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    report = (out / "report.md").read_text()
    for name in figures:
        assert f"]({name}.png)" in report
    assert "| ITRA-c λ=0.3 |" in report and "/ CE" in report  # overhead table
    groups = [line for line in report.splitlines() if line.startswith("| fashion-mnist-cnn-")]
    assert len(groups) == 6 and all("| 2 |" in line for line in groups)  # one row per group of 2 seeds
    assert all(" → " in line for line in groups)  # compactness was logged (every 3 steps)


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "No finished runs" in capsys.readouterr().err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A folder with one short CE run on digits."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--dataset", "digits", "--method", "ce", "--epochs", "1", "--train-subset", "64",
                 "--batch-size", "32", "--test-subset", "32", "--out", str(runs), "--quiet"]) == 0
    return runs


@pytest.mark.parametrize("points", [1, 2, 3, 2000])
def test_a_tsne_of_the_fewest_points_is_drawn_not_a_crash(digits_run, tmp_path, points):
    """`--tsne-points` from its least value: one sample is a panel that says so (t-SNE needs two; sklearn raised on a
    perplexity of 0), two or more are embedded."""
    out = tmp_path / "report"
    assert main(["report", str(digits_run), "--out", str(out), "--timing-steps", "1", "--tsne-points", str(points)]) == 0
    assert (out / "tsne.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_collapsed_features_get_a_panel_not_a_crash(tmp_path):
    """A run whose features are all equal (Center loss can do this) cannot be embedded by t-SNE."""
    import torch

    runs = tmp_path / "runs"
    assert main(["sweep", "--method", "ce,center", "--epochs", "1", "--train-subset", "128", "--test-subset", "100",
                 "--seeds", "1", "--out", str(runs), "--quiet"]) == 0
    checkpoint = next(runs.glob("*center*")) / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {name: torch.zeros_like(value) for name, value in state["model"].items()}
    torch.save(state, checkpoint)
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--timing-steps", "2", "--tsne-points", "100"]) == 0
    assert (out / "tsne.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_runs_of_two_studies_are_a_clear_error(tmp_path, capsys):
    common = ["--method", "ce", "--batch-size", "32", "--epochs", "1", "--test-subset", "50", "--seeds", "1",
              "--out", str(tmp_path), "--quiet"]
    assert main(["sweep", "--train-subset", "64", *common]) == 0
    assert main(["sweep", "--train-subset", "96", *common]) == 0
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err
    assert "fashion-mnist, cnn, 64 training samples" in error and "96 training samples" in error


def test_a_report_of_failed_runs_only_says_so(tmp_path):
    write_run(tmp_path / "runs", method="ce", status="failed")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "0 finished runs and 1 failed" in report and "Every run failed" in report
    assert "| 0 (+1 failed) | – |" in report and "| loss is NaN |" in report
    assert not list(out.glob("*.png"))


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_failed_runs_are_counted_never_averaged_in_or_drawn(tmp_path):
    runs, size = tmp_path / "runs", {"train_subset": 128, "test_subset": 100, "batch_size": 64}
    assert main(["sweep", "--method", "ce,itra-c", "--lam", "0.3", "--epochs", "1", "--batch-size", "64", "--train-subset", "128",
                 "--test-subset", "100", "--seeds", "1", "--out", str(runs), "--quiet"]) == 0
    write_run(runs, method="ce", seed=1, status="failed", test_ce=99.0, **size)  # a failed seed of a finished group
    write_run(runs, method="itra-c", lam=0.9, status="failed", **size)  # a group with no finished run, no checkpoint
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--timing-steps", "2", "--tsne-points", "100"]) == 0
    report = (out / "report.md").read_text()
    assert "2 finished runs and 2 failed" in report and report.count("| loss is NaN |") == 2
    ce_row = next(line for line in report.splitlines() if line.startswith("| fashion-mnist-cnn-ce-"))
    assert "| 1 (+1 failed) |" in ce_row and "99" not in ce_row
    assert not (out / "ce_vs_lambda.png").exists()  # λ=0.9 failed: one λ left, nothing to draw against λ
    assert (out / "tsne.png").read_bytes().startswith(PNG_SIGNATURE) and "| ITRA-c λ=0.3 |" in report
