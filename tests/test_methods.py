"""The methods table and the Objective: each method's loss against a hand computation, and a new
regulariser that trains through the whole CLI after one `register_method` call."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itra.cli import main
from itra.config import TrainConfig
from itra.data.fashion_mnist import DEFAULT_DIR
from itra.losses import ITRALoss
from itra.methods import (METHODS, MethodSpec, Objective, build_objective, method_label, register_method,
                          variant_label)
from itra.models import Classifier
from itra.models.registry import build_image_model
from tests.helpers import resolved


def batches(n=24, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    first = (torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, classes, (n,), generator=generator))
    second = (torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, classes, (n,), generator=generator))
    return first, second


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


def test_the_loss_is_ce_plus_lambda_times_the_match_and_s2_is_not_in_the_ce():
    torch.manual_seed(0)
    model = build_image_model("cnn", 4, 1).train()
    objective = build_objective(resolved(method="itra-c", lam=0.7, bandwidth="batch"), model, num_classes=4)
    first, second = batches()
    terms = objective(first, second)
    h1 = model.extractor(first[0])  # the same train-mode pass, by hand
    h2 = model.extractor(second[0])
    ce = F.cross_entropy(model.head(h1), first[1])
    match = ITRALoss(True, "batch", 4)(h1, first[1], h2, second[1])
    torch.testing.assert_close(terms["ce"], ce)  # S1's batch-norm statistics are S1's alone
    torch.testing.assert_close(terms["loss"], ce + 0.7 * match)


def test_label_smoothing_is_lsr_only():
    model = build_image_model("cnn", 4, 1).eval()
    first, _ = batches()
    logits = model(first[0])
    lsr = build_objective(resolved(method="lsr", smoothing=0.2), model, 4)(first)
    ce = build_objective(resolved(method="ce", smoothing=0.2), model, 4)(first)
    torch.testing.assert_close(lsr["loss"], F.cross_entropy(logits, first[1], label_smoothing=0.2))
    torch.testing.assert_close(ce["loss"], F.cross_entropy(logits, first[1]))


def test_an_objective_that_matches_needs_s2():
    objective = build_objective(resolved(method="itra"), build_image_model("cnn", 4, 1), 4)
    with pytest.raises(ValueError, match="pass S2 as well"):
        objective(batches()[0])


def test_labels_read_from_the_table():
    assert method_label(resolved(method="ce")) == "CE"
    assert method_label(resolved(method="lsr", smoothing=0.2)) == "LSR ε=0.2"
    assert method_label(resolved(method="itra-c", lam=0.6)) == "ITRA-c λ=0.6"
    assert method_label(resolved(method="ce", model="vit", exits="separate", exit_weights="uniform")) == \
        "CE (exits separate, exit_weights uniform)"


def test_register_method_checks_its_input():
    with pytest.raises(ValueError, match="exists already"):
        register_method("ce", METHODS["ce"])
    with pytest.raises(ValueError, match="Method 'new' reads unknown config fields: temperature"):
        register_method("new", MethodSpec("New", "k", fields=("temperature",)))
    assert "new" not in METHODS


class FeatureNorm(nn.Module):
    """A toy regulariser: the mean squared feature norm (S2, if given, is not used)."""

    needs_second_batch = False

    def forward(self, h1, y1, h2=None, y2=None):
        return h1.pow(2).sum(dim=1).mean()


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_a_registered_regulariser_trains_through_the_whole_cli(tmp_path, capsys):
    register_method("norm", MethodSpec("FeatureNorm", "tab:red", "Reds", ("lam",), "lam", "norm",
                                       regularizer=lambda config, num_classes, feature_dim: FeatureNorm()))
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


def test_variant_labels_name_every_changed_field_but_the_strength():
    assert variant_label(resolved(method="itra-c", lam=0.2)) == "ITRA-c"
    config = resolved(method="itra-c", lam=0.2, bandwidth="class", match="mmd2", center_alpha=0.1)
    assert variant_label(config) == "ITRA-c (bandwidth class, match mmd2)"  # centre_alpha is not ITRA's
    assert method_label(config) == "ITRA-c (bandwidth class, match mmd2) λ=0.2"
    paper = resolved(method="itra-c", bandwidth="class", lam_warmup=0)
    assert variant_label(paper) == "ITRA-c (bandwidth class, lam_warmup 0)"
    assert variant_label(resolved(method="center", lam_warmup=0)) == "Center"  # the warm-up is ITRA's


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")  # torch's inductor imports it
def test_compile_extractor_compiles_every_pass_and_keeps_the_model_as_it_is(tmp_path, monkeypatch):
    from torch._dynamo.utils import counters

    # inductor's on-disk cache does not key its precompiled header on the CPU kernel set: code compiled under
    # ATEN_CPU_CAPABILITY=default against the header of an AVX-512 run fails to build ('at::vec' has not been
    # declared). A cache of the test's own keeps the verdict independent of what ran before on the machine.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))

    def objective():
        torch.manual_seed(0)
        model = Classifier(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()), nn.Linear(5, 3)).train()
        return Objective(model, ITRALoss(True, "batch", 3), lam=0.5, term="match", pairing="detached")

    generator = torch.Generator().manual_seed(0)
    first, second = [(torch.randn(8, 6, generator=generator), torch.arange(8) % 3) for _ in range(2)]
    eager, compiled = objective(), objective()
    keys = list(compiled.model.state_dict())
    compiled.compile_extractor()
    frames = counters["frames"]["ok"]
    for value, reference in ((compiled(first, second), eager(first, second)),
                             (compiled.embed(first[0]), eager.embed(first[0]))):
        for got, want in zip(value.values() if isinstance(value, dict) else value,
                             reference.values() if isinstance(reference, dict) else reference):
            torch.testing.assert_close(got, want)
    assert counters["frames"]["ok"] > frames  # really compiled: `nn.Sequential.compile()` would not have been
    assert list(compiled.model.state_dict()) == keys  # checkpoints of compiled and eager runs are the same
