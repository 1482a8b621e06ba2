"""The --pairing modes: each mode's S2 is what it says, gradients flow only where they should (against
a chain rule written by hand), the loader draws S2 only for the modes that use it, `previous` resumes
exactly, and the default is the step itra always took."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itra.data import PairedLoader
from itra.experiments.runs import resume, run
from itra.losses import ITRALoss
from itra.objective import Objective
from itra.models import Classifier
from itra.pairing import ONE_PROCESS, PreviousBatch, samples_per_step, split_halves  # ranks: test_distributed

from itra.rundir import read_metrics

from tests.helpers import fit_first_epoch_then_interrupt, needs_fmnist, small

CLASSES = 3


class Spy(nn.Module):
    """ITRA-c's match, remembering the arguments of its last call."""

    needs_second_batch = True

    def __init__(self) -> None:
        super().__init__()
        self.match = ITRALoss(True, "batch", CLASSES)
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, h1, y1, h2=None, y2=None):
        self.calls.append((h1, y1, h2, y2))
        return self.match(h1, y1, h2, y2)


def tiny_objective(pairing: str, extractor: nn.Module | None = None, seed: int = 0,
                   s2_state: str = "update") -> Objective:
    """A float64 model with batch norm (features (B, 5)) under an ITRA-c objective with λ = 1 (S2's pass updating the
    running statistics, as itra's did before --s2-state, unless `s2_state` says otherwise)."""
    torch.manual_seed(seed)
    extractor = extractor or nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh())
    model = Classifier(extractor, nn.Linear(5, CLASSES)).double().train()
    return Objective(model, Spy(), lam=1.0, term="match", pairing=pairing, s2_state=s2_state)


def batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 6, generator=generator, dtype=torch.float64),
            torch.arange(n) % CLASSES)  # every class in every half


@pytest.mark.parametrize("s2_state", ["update", "keep"])
@pytest.mark.parametrize("pairing", ["independent", "detached"])
def test_a_drawn_s2_has_its_own_train_mode_pass_independent_of_s1(pairing, s2_state):
    objective = tiny_objective(pairing, s2_state=s2_state)
    assert objective.draws_second_batch
    second = batch(8, seed=2)
    terms = objective(batch(8, seed=1), second)
    # With "update" S2's pass updates the running statistics too (2 passes), as itra did before pairings existed;
    # with "keep" (the default) only S1's does.
    assert int(objective.model.extractor[1].num_batches_tracked) == {"update": 2, "keep": 1}[s2_state]
    _, _, h2, y2 = objective.regularizer.calls[-1]
    objective(batch(8, seed=3), second)  # another S1: the same S2 features
    assert torch.equal(objective.regularizer.calls[-1][2], h2)
    assert torch.equal(h2, objective.model.extractor(second[0]))  # normalised by S2's own batch statistics
    assert torch.equal(y2, second[1])
    assert h2.requires_grad == (pairing == "independent")
    if pairing == "detached":
        assert h2.grad_fn is None
        reference = tiny_objective("independent", s2_state=s2_state)(batch(8, seed=1), second)  # with S2's graph
        assert all(torch.equal(terms[name], reference[name]) for name in terms)


def match_grads(h1, y1, h2, y2) -> tuple[torch.Tensor, torch.Tensor]:
    """dM/dh1 and dM/dh2 of ITRA-c's match at these features."""
    h1, h2 = h1.detach().requires_grad_(True), h2.detach().requires_grad_(True)
    return torch.autograd.grad(ITRALoss(True, "batch", CLASSES)(h1, y1, h2, y2), (h1, h2))


def extractor_vjp(objective: Objective, features: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """Jᵀ grad over the extractor's parameters, J = d features / dθ."""
    return list(torch.autograd.grad(features, list(objective.model.extractor.parameters()), grad))


@pytest.mark.parametrize("pairing", ONE_PROCESS)
def test_the_match_gradient_flows_only_where_the_mode_says(pairing):
    """By the chain rule dM/dθ = J1ᵀ dM/dh1 + J2ᵀ dM/dh2: each mode keeps the terms of the passes it
    differentiates."""
    objective = tiny_objective(pairing)
    first, second = batch(16 if pairing == "split" else 8, seed=1), batch(8, seed=2)
    if pairing == "previous":
        objective(batch(8, seed=5))  # the step before: its S1 is this step's S2
        kept = objective.previous.batch
    terms = objective(first, second if objective.draws_second_batch else None)
    grads = torch.autograd.grad(terms["match"], list(objective.model.extractor.parameters()))

    features = objective.model.extractor(first[0])  # the same train-mode passes, by hand
    if pairing == "split":  # one pass over 2m: both halves' gradients go back through it
        g1, g2 = match_grads(features[:8], first[1][:8], features[8:], first[1][8:])
        expected = extractor_vjp(objective, features, torch.cat([g1, g2]))
    elif pairing == "previous":  # the kept features are constants
        g1, _ = match_grads(features, first[1], *kept)
        expected = extractor_vjp(objective, features, g1)
    else:
        features2 = objective.model.extractor(second[0])
        g1, g2 = match_grads(features, first[1], features2, second[1])
        expected = extractor_vjp(objective, features, g1)
        if pairing == "independent":
            expected = [a + b for a, b in zip(expected, extractor_vjp(objective, features2, g2))]
        else:  # detached: the S2 term is really missing, not just small
            assert extractor_vjp(objective, features2, g2)[0].abs().max() > 1e-3
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_previous_keeps_the_last_s1_without_its_graph_and_its_first_step_is_ce_only():
    objective = tiny_objective("previous")
    assert not objective.draws_second_batch
    first = batch(8, seed=1)
    terms = objective(first)
    assert terms["match"] == 0 and torch.equal(terms["loss"], terms["ce"]) and not objective.regularizer.calls
    step_one, labels = objective.previous.batch
    assert torch.equal(step_one, objective.model.extractor(first[0])) and torch.equal(labels, first[1])
    assert not step_one.requires_grad and step_one.grad_fn is None

    second = batch(6, seed=2)  # an epoch's last batch may be smaller
    terms = objective(second)
    h1, y1, h2, y2 = objective.regularizer.calls[-1]
    assert h2 is step_one and torch.equal(y2, first[1]) and len(h1) == 6 and terms["match"] > 0
    assert len(objective.previous.batch[0]) == 6 and torch.equal(objective.previous.batch[1], second[1])

    restored = PreviousBatch()  # what a checkpoint keeps, and an empty one before the first step
    restored.load_state_dict(objective.previous.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.batch, objective.previous.batch))
    assert PreviousBatch().state_dict() == {}
    restored.load_state_dict({})
    assert restored.batch is None


def test_split_halves_are_disjoint_cover_the_batch_and_the_ce_is_over_both():
    objective = tiny_objective("split", extractor=nn.Identity())  # features = inputs: rows say which sample
    inputs = torch.arange(14, dtype=torch.float64)[:, None].repeat(1, 5)  # sample i is the row of i's
    labels = torch.arange(14) % CLASSES
    terms = objective((inputs, labels))
    h1, y1, h2, y2 = objective.regularizer.calls[-1]
    ids1, ids2 = h1[:, 0].long().tolist(), h2[:, 0].long().tolist()
    assert ids1 == list(range(7)) and ids2 == list(range(7, 14))  # disjoint, together the batch
    assert torch.equal(y1, labels[:7]) and torch.equal(y2, labels[7:])
    torch.testing.assert_close(terms["ce"], F.cross_entropy(objective.model.head(inputs), labels))

    assert [len(half) for half in split_halves(inputs[:5], labels[:5])[::2]] == [3, 2]  # an odd last batch
    assert split_halves(inputs[:1], labels[:1]) is None
    calls = len(objective.regularizer.calls)
    assert objective((inputs[:1], labels[:1]))["match"] == 0 and len(objective.regularizer.calls) == calls


def test_a_split_epoch_is_one_pass_in_batches_of_2m():
    dataset = torch.utils.data.TensorDataset(torch.arange(50), torch.arange(50) % CLASSES)
    loader = PairedLoader(dataset, samples_per_step("split", 8), seed=0, paired=False)
    seen = torch.cat([x for x, _ in loader])
    assert len(loader) == 4 and sorted(seen.tolist()) == list(range(50))  # every sample once, 16 a step


@pytest.mark.parametrize("pairing", ["independent", "detached"])
def test_pairing_needs_a_regulariser_that_matches_s2(pairing):
    Objective(tiny_objective(pairing).model, None, pairing="independent")
    with pytest.raises(ValueError, match="Expected pairing='independent' for an objective that matches no S2 "
                                         r"\(no regulariser\), but got 'split'"):
        Objective(tiny_objective(pairing).model, None, pairing="split")
    with pytest.raises(ValueError, match="Expected `pairing` in independent, detached, previous, split, ranks, but got"):
        Objective(tiny_objective(pairing).model, Spy(), pairing="ring")


@needs_fmnist
@pytest.mark.parametrize("pairing", ONE_PROCESS)
def test_fit_draws_s2_only_for_the_modes_that_use_it(tmp_path, splits, monkeypatch, pairing):
    seen = []
    original = Objective.forward

    def spy(self, first, second=None):
        seen.append((len(first[-1]), second is None))
        return original(self, first, second)

    monkeypatch.setattr(Objective, "forward", spy)
    config = small(pairing=pairing, epochs=1, train_subset=256, test_subset=64)
    run_dir, summary = run(config, tmp_path, splits, progress=False)
    step = samples_per_step(pairing, 64)
    assert seen == [(step, pairing in ("previous", "split"))] * (256 // step)
    schedule = torch.load(run_dir / "checkpoint.pt", weights_only=True)["schedule"]
    assert schedule["T_max"] == schedule["last_epoch"] == 256 // step  # the cosine counts the steps taken
    assert summary["status"] == "finished"


@needs_fmnist
def test_previous_resumes_exactly_like_an_uninterrupted_run(tmp_path, splits):
    config = small(pairing="previous")
    _, uninterrupted = run(config, tmp_path / "a", splits, progress=False)
    run_dir = tmp_path / "b" / config.name
    fit_first_epoch_then_interrupt(config, splits, run_dir)
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=True)["ranks"][0]["previous_batch"]
    assert kept["features"].shape == (64, 128) and kept["labels"].shape == (64,)  # epoch 1's last S1

    _, resumed = resume(run_dir, progress=False)
    for key in ("test_accuracy", "test_cross_entropy", "test_ece", "train_ce", "train_match", "train_loss"):
        assert resumed[key] == uninterrupted[key], key
    assert [row["epoch"] for row in read_metrics(run_dir)] == [1, 2]


def eq4_step(self, first, second=None):
    """The step itra took before pairings existed (Eq. (4)), written out: S1's CE, S2's own pass, the match."""
    *inputs1, y1 = first
    h1 = self.model.extractor(*inputs1)
    ce = F.cross_entropy(self.model.head(h1), y1)
    *inputs2, y2 = second
    match = self.regularizer(h1, y1, self.model.extractor(*inputs2), y2)
    return {"ce": ce, "match": match, "loss": ce + self.lam * match}


@needs_fmnist
def test_the_default_pairing_is_the_step_itra_always_took(tmp_path, splits, monkeypatch):
    config = small(epochs=1, s2_state="update")  # the step by hand updates the running statistics on both passes
    assert config == small(epochs=1, pairing="independent", s2_state="update") and "independent" not in config.name
    default_dir, _ = run(config, tmp_path / "default", splits, progress=False)
    monkeypatch.setattr(Objective, "forward", eq4_step)
    by_hand_dir, _ = run(small(epochs=1, pairing="independent", s2_state="update"), tmp_path / "by-hand", splits,
                         progress=False)
    assert default_dir.name == by_hand_dir.name
    rows = [[{k: v for k, v in row.items() if k != "elapsed_s"} for row in read_metrics(d)]
            for d in (default_dir, by_hand_dir)]
    assert rows[0] == rows[1]  # bit for bit


def test_a_new_pairing_is_a_table_entry_and_its_function(tmp_path, capsys):
    """`register_pairing`: S2 = S1's own features, detached (a toy): the CLI takes it, the run name holds it, the
    objective builds its pairs with it, and its rules come from its entry."""
    from itra.cli import main
    from itra.pairing import PAIRINGS, PairingSpec, register_pairing

    calls = []

    def itself(passes, layers1, y1, second):
        calls.append(second)
        return [(h1, y1, h1.detach(), y1) for h1 in layers1]

    register_pairing("itself", PairingSpec(itself, second_batch="S1 itself", every_exit=False))
    try:
        with pytest.raises(ValueError, match="exists already"):
            register_pairing("itself", PAIRINGS["itself"])
        argv = ["train", "--dataset", "digits", "--method", "itra-c", "--pairing", "itself", "--epochs", "1",
                "--train-subset", "128", "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path), "--quiet"]
        assert main(argv) == 0
        (run_dir,) = tmp_path.glob("digits-cnn-itra-c-lam0.6-warmr0.1-itself-*")
        assert len(calls) == 128 // 32 and all(second is None for second in calls)  # it draws no S2
        assert main([*argv, "--second-batch-size", "16"]) == 2  # its entry: no S2 to size
        assert "Expected no `second_batch_size` with pairing 'itself', whose S2 is S1 itself" in capsys.readouterr().err
    finally:
        PAIRINGS.pop("itself")


def lam0_objectives(pairing: str, s2_state: str) -> tuple[Objective, Objective]:
    """CE and ITRA-c at λ = 0 (with `pairing` and `s2_state`) on two copies of one float64 model with batch norm and
    dropout."""
    def model() -> Classifier:
        torch.manual_seed(0)
        extractor = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5))
        return Classifier(extractor, nn.Linear(5, CLASSES)).double().train()

    return Objective(model()), Objective(model(), Spy(), lam=0.0, term="match", pairing=pairing, s2_state=s2_state)


def buffers(objective: Objective) -> dict[str, torch.Tensor]:
    return dict(objective.model.named_buffers())


@pytest.mark.parametrize("pairing", ["independent", "detached"])
def test_what_s2s_pass_changes_besides_the_match(pairing):
    """At λ = 0 a step is CE's step, but S2's forward pass ("update") also updates the batch-norm running statistics a
    second time (num_batches_tracked 2, not 1) and draws its dropout masks from the global stream, so every later
    draw (S1's next masks) moves; "keep" leaves both as CE's step does, bit for bit."""
    first, second = batch(8, seed=1), batch(8, seed=2)
    for s2_state, same in (("update", False), ("keep", True)):
        ce, itra = lam0_objectives(pairing, s2_state)
        torch.manual_seed(5)
        ce_terms = ce(first)
        ce_stream = torch.get_rng_state()
        torch.manual_seed(5)
        terms = itra(first, second)
        assert torch.equal(terms["loss"], ce_terms["loss"]) and torch.equal(terms["ce"], ce_terms["ce"])
        assert torch.equal(torch.get_rng_state(), ce_stream) == same
        stats = buffers(itra)
        assert int(stats["extractor.1.num_batches_tracked"]) == (1 if same else 2)
        assert all(torch.equal(stats[name], value) for name, value in buffers(ce).items()) == same
        _, _, h2, _ = itra.regularizer.calls[-1]
        assert h2.requires_grad == (pairing == "independent") and h2.shape == (8, 5)


def test_kept_state_still_normalises_s2_by_its_own_batch_and_draws_its_own_masks():
    from itra.pairing import state_kept

    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    with state_kept(bn, torch.device("cpu")):
        kept = bn(x)
    assert torch.equal(kept, nn.BatchNorm1d(3).train()(x))  # batch statistics, as an S2 pass that updates them
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(3))
    torch.manual_seed(3)
    with state_kept(nn.Identity(), torch.device("cpu")):
        inside = torch.rand(4)
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after)  # the global stream is where it was
    assert not torch.equal(inside, after)  # S2's draws are not a copy of what S1 draws next
    torch.manual_seed(3)
    with state_kept(nn.Identity(), torch.device("cpu")):
        assert torch.equal(torch.rand(4), inside)  # and are fixed by the seed


def test_a_forked_generator_leaves_the_one_it_forks_where_it_was():
    from itra.pairing import forked

    generator = torch.Generator().manual_seed(7)
    own = torch.rand(4, generator=forked(generator))
    after = torch.rand(4, generator=generator)
    assert torch.equal(after, torch.rand(4, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(own, after)
    assert torch.equal(own, torch.rand(4, generator=forked(torch.Generator().manual_seed(7))))


def test_s2_state_is_read_only_where_s2_has_a_pass_of_its_own():
    from tests.helpers import resolved

    assert resolved(s2_state="keep").s2_state == "keep"
    assert resolved(s2_state="keep", pairing="detached").name.endswith("-detached-s2keep-bs128-e15-seed0")
    for pairing in ("previous", "split"):
        assert resolved(s2_state="keep", pairing=pairing) == resolved(pairing=pairing)  # no S2 pass: off
    assert resolved(method="ce", s2_state="keep").s2_state is None
    with pytest.raises(ValueError, match="Expected `s2_state` in update, keep, but got 'frozen'"):
        resolved(s2_state="frozen")


@pytest.mark.parametrize("model", ["cnn", "vgg13"])  # batch norm; batch norm and dropout
def test_with_the_state_kept_lambda_0_is_ce_bit_for_bit(tmp_path, model):
    """The control: ITRA-c at λ = 0 whose S2 pass keeps the state (`--s2-state keep`) trains CE's run exactly, with
    augmentation too; S2's pass that updates it ("update") trains another run."""
    import dataclasses

    from itra.data.registry import load_dataset
    from itra.data.transforms import random_horizontal_flip
    from tests.helpers import resolved

    splits = dataclasses.replace(load_dataset("digits"), train_transform=random_horizontal_flip)
    common = dict(dataset="digits", model=model, epochs=1, batch_size=32, train_subset=128, test_subset=64,
                  device="cpu", compactness_every=2)
    runs = {}
    for name, fields in (("ce", {"method": "ce"}), ("keep", {"method": "itra-c", "lam": 0.0, "s2_state": "keep"}),
                         ("update", {"method": "itra-c", "lam": 0.0, "s2_state": "update"})):
        run_dir, summary = run(resolved(**common, **fields), tmp_path, splits, progress=False)
        assert summary["status"] == "finished"
        rows = [{key: value for key, value in row.items() if key not in ("elapsed_s", "train_match")}
                for row in read_metrics(run_dir)]
        runs[name] = rows, torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    (ce_rows, ce_model), (keep_rows, keep_model), (update_rows, update_model) = runs.values()
    assert keep_rows == ce_rows
    assert all(torch.equal(keep_model[name], value) for name, value in ce_model.items())
    assert update_rows != ce_rows
    assert not all(torch.equal(update_model[name], value) for name, value in ce_model.items())


def test_a_registered_pairing_that_draws_s2_honours_the_s2_state():
    from itra.pairing import PAIRINGS, PairingSpec, register_pairing

    def own(passes, layers1, y1, second):
        *inputs2, y2 = second
        return [(layers1[-1], y1, passes.extract(*inputs2), y2)]

    register_pairing("own", PairingSpec(own, draws_second_batch=True, every_exit=False))
    try:
        for s2_state, tracked in (("update", 2), ("keep", 1)):
            _, itra = lam0_objectives("own", s2_state)
            itra(batch(8, seed=1), batch(8, seed=2))
            assert int(buffers(itra)["extractor.1.num_batches_tracked"]) == tracked
    finally:
        PAIRINGS.pop("own")
