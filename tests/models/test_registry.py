import pytest
import torch

from itra.models.registry import IMAGE_MODELS, build_image_model


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vgg13", "mobilenetv2"])
def test_build_by_name(name):
    model = build_image_model(name, num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_stem_reaches_the_model():
    cifar = build_image_model("resnet18", 10, 3, stem="cifar")
    imagenet = build_image_model("resnet18", 10, 3, stem="imagenet")
    def pools(model):
        return sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())

    assert (pools(cifar), pools(imagenet)) == (0, 1)  # the ImageNet stem's max-pool


@pytest.mark.parametrize("args,match", [(("vit", 10, 3), "Unknown model 'vit'"), (("cnn", 1, 3), "num_classes"),
                                        (("cnn", 10, 0), "in_channels")])
def test_errors(args, match):
    with pytest.raises(ValueError, match=match):
        build_image_model(*args)


def test_names_match_the_cli_help():
    from itra.train import TrainConfig
    import dataclasses

    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "model").metadata["help"]
    assert all(name in help_text for name in IMAGE_MODELS)
