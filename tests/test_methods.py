"""The methods table: every entry true of the objective it builds, and a new regulariser that trains through the
whole CLI after one `register_method` call."""
import json

import pytest
import torch
from torch import nn

from itra.cli import main
from itra.data.fashion_mnist import DEFAULT_DIR
from itra.methods import METHODS, MethodSpec, Regularizer, register_method
from itra.objective import build_objective
from itra.models.registry import build_image_model
from tests.helpers import resolved
from tests.test_objective import batches


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_builds_and_its_table_entry_is_true(method):
    config = resolved(method=method)
    objective = build_objective(config, build_image_model("cnn", 4, 1), num_classes=4)
    spec = METHODS[method]
    assert objective.needs_second_batch == spec.needs_second_batch
    assert (objective.regularizer is None) == (spec.term is None)
    first, second = batches()
    terms = objective(first, second)
    assert set(terms) == {"ce", "loss"} | ({spec.term} if spec.term else set())
    assert all(torch.isfinite(value) for value in terms.values())
    assert set(spec.fields) <= {f for f in config.__dataclass_fields__}


def test_register_method_checks_its_input():
    with pytest.raises(ValueError, match="exists already"):
        register_method("ce", METHODS["ce"])
    with pytest.raises(ValueError, match="Method 'new' reads unknown config fields: temperature"):
        register_method("new", MethodSpec("New", "k", fields=("temperature",)))
    with pytest.raises(ValueError, match="Method 'new'.s regulariser reads fields its `fields` do not name: match"):
        register_method("new", MethodSpec("New", "k", fields=("lam",),
                                          regularizer=Regularizer(FeatureNorm, ("match",))))
    assert "new" not in METHODS


class FeatureNorm(nn.Module):
    """A toy regulariser: the mean squared feature norm (S2, if given, is not used)."""

    needs_second_batch = False

    def forward(self, h1, y1, h2=None, y2=None):
        return h1.pow(2).sum(dim=1).mean()


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_a_registered_regulariser_trains_through_the_whole_cli(tmp_path, capsys):
    register_method("norm", MethodSpec("FeatureNorm", "tab:red", "Reds", ("lam",), "lam", "norm",
                                       regularizer=Regularizer(lambda num_classes, feature_dim: FeatureNorm())))
    try:
        common = ["--epochs", "1", "--train-subset", "256", "--test-subset", "128", "--batch-size", "64",
                  "--out", str(tmp_path), "--quiet"]
        assert main(["train", "--method", "norm", "--lam", "0.01", *common]) == 0
        assert main(["sweep", "--method", "ce,norm", "--lam", "0.01,0.1", "--seeds", "1", *common]) == 0
        assert main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--timing-steps", "1",
                     "--tsne-points", "60"]) == 0
    finally:
        METHODS.pop("norm")
    run_dir = tmp_path / "fashion-mnist-cnn-norm-lam0.01-bs64-e1-n256-test128-seed0"
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["train_norm"] > 0 and row["train_loss"] == pytest.approx(row["train_ce"] + 0.01 * row["train_norm"], rel=1e-6)
    assert sorted(p.name for p in tmp_path.glob("fashion-mnist-*")) == [
        "fashion-mnist-cnn-ce-bs64-e1-n256-test128-seed0", run_dir.name,
        "fashion-mnist-cnn-norm-lam0.1-bs64-e1-n256-test128-seed0"]
    assert "FeatureNorm λ=" in (tmp_path / "report" / "report.md").read_text()  # its label, from METHODS
