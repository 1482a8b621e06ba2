"""The Objective: each method's loss against a hand computation, S2 kept out of the CE, and a compiled extractor
that computes what the eager one does."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itra.losses import ITRALoss
from itra.models import Classifier
from itra.models.registry import build_image_model
from itra.objective import Objective, build_objective
from tests.helpers import resolved


def batches(n=24, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    first = (torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, classes, (n,), generator=generator))
    second = (torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, classes, (n,), generator=generator))
    return first, second


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
