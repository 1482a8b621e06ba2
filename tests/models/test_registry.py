import dataclasses

import pytest
import torch

from itra.models.registry import IMAGE_MODELS, build_image_model
from itra.config import TrainConfig

FEATURE_DIMS = {"cnn": 128, "resnet18": 512, "resnet50": 2048, "resnet101": 2048, "vgg13": 512, "mobilenetv2": 1280,
                "vit": 64}


def test_every_name_builds_with_its_feature_dim():
    assert set(IMAGE_MODELS) == set(FEATURE_DIMS)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        for name, dim in FEATURE_DIMS.items():
            model = build_image_model(name, num_classes=7, in_channels=1)
            assert (model.feature_dim, model.head.out_features) == (dim, 7)


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vgg13", "mobilenetv2", "vit"])
def test_build_by_name(name):
    model = build_image_model(name, num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_stem_reaches_the_model():
    def pools(model):
        return sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())

    with torch.device("meta"):
        cifar = build_image_model("resnet18", 10, 3, stem="cifar")
        imagenet = build_image_model("resnet18", 10, 3, stem="imagenet")
    assert (pools(cifar), pools(imagenet)) == (0, 1)  # the ImageNet stem's max-pool


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_single_design_models_ignore_the_stem(name):
    torch.manual_seed(0)
    cifar = build_image_model(name, 10, 1, stem="cifar")
    torch.manual_seed(0)
    imagenet = build_image_model(name, 10, 1, stem="imagenet")
    assert str(cifar) == str(imagenet)
    assert all(torch.equal(a, b) for a, b in zip(cifar.state_dict().values(), imagenet.state_dict().values()))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("vit-b16", 10, 3),
         r"Unknown model 'vit-b16'; expected one of: cnn, resnet18, resnet50, resnet101, vgg13, mobilenetv2, vit"),
        (("cnn", 1, 3), r"`num_classes` >= 2, but got 1"),
        (("resnet18", 10, 0), r"`in_channels` >= 1, but got 0"),
        (("cnn", 10, 1, "imagnet"), r"`stem` to be one of 'cifar', 'imagenet', but got 'imagnet'"),
    ],
)
def test_errors(args, match):
    with pytest.raises(ValueError, match=match):
        build_image_model(*args)


def test_names_match_the_cli_help():
    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "model").metadata["help"]
    assert all(name in help_text for name in IMAGE_MODELS)


@pytest.mark.parametrize(("name", "count"), [("resnet18", 4), ("vit", 6)])
def test_exits_by_name(name, count):
    torch.manual_seed(0)
    model = build_image_model(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        exits = model.exits(x)
        assert len(exits) == count and torch.equal(exits[-1], model.extractor(x))
        assert model.exit_dims == [h.shape[1] for h in exits]


@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_exit_heads_classify_each_exit_and_the_last_exit_keeps_the_head(name):
    torch.manual_seed(0)
    model = build_image_model(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ValueError, match="call add_exit_heads"):
        model.exit_logits(model.exits(x), separate=True)
    model.add_exit_heads()
    assert [head.in_features for head in model.exit_heads] == model.exit_dims[:-1]
    with torch.no_grad():
        exits = model.exits(x)
        logits = model.exit_logits(exits, separate=True)
        assert [z.shape for z in logits] == [(2, 7)] * len(exits)
        torch.testing.assert_close(logits[0], model.exit_heads[0](exits[0]))
        torch.testing.assert_close(logits[-1], model(x))
    with pytest.raises(ValueError, match="has exit heads already"):
        model.add_exit_heads()


def test_the_shared_head_classifies_every_exit_of_equal_width():
    model = build_image_model("vit", num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        exits = model.exits(torch.randn(2, 1, 28, 28))
        for z, h in zip(model.exit_logits(exits, separate=False), exits):
            torch.testing.assert_close(z, model.head(h))


@pytest.mark.parametrize("name", ["cnn", "vgg13", "mobilenetv2"])
def test_models_without_exits_say_so(name):
    model = build_image_model(name, num_classes=7, in_channels=1)
    for attempt in (lambda: model.exits(torch.randn(2, 1, 28, 28)), lambda: model.exit_dims, model.add_exit_heads):
        with pytest.raises(NotImplementedError, match="Sequential has no layer-wise exits; models with exits: vit"):
            attempt()


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vgg13", "mobilenetv2", "vit"])
def test_a_forward_and_backward_read_nothing_back_to_the_host(name):
    from itra.device import HostReads
    from itra.models.layers import exact_pools

    channels, size = (1, 28) if name in ("cnn", "vit") else (3, 32)
    model = build_image_model(name, 10, channels).train()
    x = torch.randn(4, channels, size, size)
    model(x)  # the first forward may build what it keeps (the ViT's position embeddings)
    for candidate in (model, exact_pools(model)):
        with HostReads() as counter:
            candidate(x).sum().backward()
        assert counter.reads == [], (name, counter.reads)
