"""Multi-exit training (`itra.exits`): the exit weights, and the Objective's loss under every exit mode against
a computation by hand; aligned training makes the last layer's head work after the first layer."""
import pytest
import torch
import torch.nn.functional as F

from itra.layer_analysis import layerwise
from itra.exits import exit_weight_vector, weighted_sum
from itra.losses import ITRALoss
from itra.objective import Objective, build_objective
from itra.models.registry import build_image_model
from itra.models.vit import small_vit
from tests.helpers import resolved


@pytest.mark.parametrize("count", [1, 2, 6, 12])
def test_linear_weights_grow_with_depth_as_2l_over_L_L_plus_1_and_both_kinds_sum_to_one(count):
    linear = exit_weight_vector(count, "linear")
    expected = [2 * layer / (count * (count + 1)) for layer in range(1, count + 1)]
    torch.testing.assert_close(linear, torch.tensor(expected))
    assert bool((linear[1:] > linear[:-1]).all())
    torch.testing.assert_close(exit_weight_vector(count, "uniform"), torch.full((count,), 1 / count))
    for kind in ("linear", "uniform"):
        torch.testing.assert_close(exit_weight_vector(count, kind).sum(), torch.tensor(1.0))


def test_weight_errors_name_the_value():
    with pytest.raises(ValueError, match="Expected `exit_weights` in linear, uniform, but got 'square'"):
        exit_weight_vector(3, "square")
    with pytest.raises(ValueError, match="at least one exit, but got 0"):
        exit_weight_vector(0)


def tiny_vit(depth=3, separate=False):
    torch.manual_seed(0)
    model = small_vit(4, 1, width=16, depth=depth, heads=2)
    if separate:
        model.add_exit_heads()
    return model.train()


def batches(n=16, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(n, 1, 8, 8, generator=generator), torch.randint(0, classes, (n,), generator=generator))
                 for _ in range(2))


@pytest.mark.parametrize("exits", ["shared", "separate"])
@pytest.mark.parametrize("kind", ["linear", "uniform"])
def test_the_ce_is_the_weighted_sum_over_exits_of_each_exit_s_head(exits, kind):
    model = tiny_vit(separate=exits == "separate")
    config = resolved(method="lsr", smoothing=0.1, model="vit", exits=exits, exit_weights=kind)
    terms = build_objective(config, model, 4)(batches()[0])
    x, y = batches()[0]
    layers = model.extractor.exits(x)
    heads = [*model.exit_heads, model.head] if exits == "separate" else [model.head] * 3
    weights = exit_weight_vector(3, kind)
    expected = sum(w * F.cross_entropy(head(h), y, label_smoothing=0.1) for w, head, h in zip(weights, heads, layers))
    torch.testing.assert_close(terms["ce"], expected)
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()  # every exit's head and every block get a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_one_exit_is_the_standard_loss_exactly():
    model = tiny_vit()
    x, y = batches()[0]
    ce = build_objective(resolved(method="ce", model="vit"), model, 4)((x, y))["ce"]
    assert torch.equal(ce, F.cross_entropy(model(x), y))


@pytest.mark.parametrize("pairing", ["independent", "detached", "split"])
def test_matching_at_every_exit_is_the_weighted_sum_of_each_exit_s_match(pairing):
    model = tiny_vit()
    config = resolved(method="itra-c", lam=0.5, model="vit", exits="shared", match_at="every", pairing=pairing)
    objective = build_objective(config, model, 4)
    first, second = batches()
    terms = objective(first, second if pairing != "split" else None)
    layers1 = model.extractor.exits(first[0])
    if pairing == "split":
        pairs = [(h[:8], first[1][:8], h[8:], first[1][8:]) for h in layers1]
    else:
        pairs = [(h1, first[1], h2, second[1]) for h1, h2 in zip(layers1, model.extractor.exits(second[0]))]
    match = ITRALoss(True, "batch", 4)
    expected = weighted_sum([match(*pair) for pair in pairs], exit_weight_vector(3))
    torch.testing.assert_close(terms["match"], expected)
    torch.testing.assert_close(terms["loss"], terms["ce"] + 0.5 * expected)
    last_only = build_objective(resolved(method="itra-c", model="vit", exits="shared", pairing=pairing), model, 4)
    torch.testing.assert_close(last_only(first, second if pairing != "split" else None)["match"], match(*pairs[-1]))


def test_a_text_encoder_trains_its_layers_with_separate_heads():
    from itra.models.text import text_classifier
    from tests.models.test_text import padded_batch, tiny_bert

    torch.manual_seed(0)
    model = text_classifier(tiny_bert(), num_classes=3).eval()  # no dropout: the two passes below agree
    model.add_exit_heads()
    input_ids, attention_mask = padded_batch([5, 3, 4, 5], width=6)
    y = torch.tensor([0, 1, 2, 1])
    objective = build_objective(resolved(dataset="wordnet", model="minilm", method="itra-c", exits="separate",
                                            match_at="every", pairing="split"), model, 3)
    terms = objective((input_ids, attention_mask, y))
    layers = model.extractor.exits(input_ids, attention_mask)
    ce = [F.cross_entropy(head(h), y) for head, h in zip([model.exit_heads[0], model.head], layers)]
    torch.testing.assert_close(terms["ce"], ce[0] / 3 + 2 * ce[1] / 3)  # L = 2: w = (1/3, 2/3)
    terms["loss"].backward()
    assert model.exit_heads[0].weight.grad is not None


def test_detached_every_exit_match_sends_no_gradient_through_s2():
    model = tiny_vit()
    objective = build_objective(resolved(method="itra-c", model="vit", exits="shared", match_at="every",
                                            pairing="detached"), model, 4)
    first, second = batches()
    second[0].requires_grad_(True)
    objective(first, second)["match"].backward()
    assert second[0].grad is None


def test_what_a_model_cannot_do_is_one_clear_error():
    resnet = build_image_model("resnet18", 4, 1)
    with pytest.raises(ValueError, match=r"the exits of this ResNet\w* differ in width \(\[64, 128, 256, 512\]\): "
                                         r"use --exits separate$"):
        Objective(resnet, exits="shared")
    with pytest.raises(ValueError, match="call model.add_exit_heads"):
        Objective(resnet, exits="separate")
    resnet.add_exit_heads()
    Objective(resnet, exits="separate")  # stage widths differ: separate heads read them
    with pytest.raises(NotImplementedError, match="no layer-wise exits"):
        Objective(build_image_model("cnn", 4, 1), exits="shared")
    with pytest.raises(ValueError, match="Expected match_at='every' with exits 'shared' or 'separate'"):
        Objective(tiny_vit(), ITRALoss(), exits="last", match_at="every")


@pytest.mark.parametrize("registered", [False, True])
def test_match_at_every_is_refused_for_a_pairing_whose_entry_says_it_cannot(registered):
    """The objective reads the pairing's table entry (`every_exit`), as `resolve` does: "previous", and a pairing
    registered with `every_exit=False`, are refused with --match-at every; "independent" is not."""
    from itra.pairing import PAIRINGS, PairingSpec, register_pairing

    name = "previous"
    if registered:
        name = "itself"
        register_pairing(name, PairingSpec(lambda passes, layers1, y1, second: [], second_batch="S1 itself",
                                           every_exit=False))
    try:
        with pytest.raises(ValueError, match="a pairing that can match at every exit"):
            Objective(tiny_vit(), ITRALoss(), exits="shared", match_at="every", pairing=name)
        Objective(tiny_vit(), ITRALoss(), exits="shared", match_at="every", pairing="independent")
    finally:
        if registered:
            PAIRINGS.pop(name)


def test_aligned_training_makes_the_last_head_work_after_the_first_layer(tmp_path):
    """Standard training leaves the first exit unreadable by the last layer's head; aligned training (a shared
    head on every exit) makes it classify there, on real handwritten digits."""
    from itra.data.digits import load_digits
    from itra.train import fit

    splits = load_digits()
    first_exit = {}
    for exits in ("last", "shared"):
        config = resolved(dataset="digits", model="vit", method="ce", exits=exits, epochs=4, batch_size=64,
                             optimizer="adamw", lr=3e-3, device="cpu", compactness_every=0)
        torch.manual_seed(0)
        model = small_vit(10, 1, width=32, depth=3, heads=2)
        summary = fit(config, splits, model, tmp_path / exits, progress=False)
        assert summary["status"] == "finished"
        first_exit[exits] = layerwise(model, splits.test, torch.device("cpu"))["accuracy"][0]
    assert first_exit["shared"] > first_exit["last"] + 10, first_exit  # measured: 86.7 % against 65.0 %
