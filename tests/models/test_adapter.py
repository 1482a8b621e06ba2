"""The adapter on plain torch modules shaped like torchvision's: features are the input of the final linear layer."""
import copy
import sys

import pytest
import torch
from torch import nn

from itra.cli import main
from itra.models.adapter import TimmFeatures, find_classification_layer, split_classifier
from itra.models.libraries import check_library_model, library_of


class WithFc(nn.Module):  # torchvision ResNet: ... -> avgpool -> flatten -> fc
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))


class WithClassifier(nn.Module):  # torchvision VGG / MobileNet: features -> classifier = Sequential(..., Linear)
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 4))

    def forward(self, x):
        return self.classifier(self.features(x))


class WithHeads(nn.Module):  # torchvision ViT: ... -> heads = Sequential(head=Linear)
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(64, 6)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(6, 4))

    def forward(self, x):
        return self.heads(self.body(x.flatten(1)).tanh())


@pytest.mark.parametrize(("make", "name"), [(WithFc, "fc"), (WithClassifier, "classifier.3"), (WithHeads, "heads.head")])
def test_features_are_the_input_of_the_final_linear_layer(make, name):
    torch.manual_seed(0)
    reference, x = make().eval(), torch.randn(3, 1, 8, 8)
    inputs = []
    reference.get_submodule(name).register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    logits = reference(x)
    model = split_classifier(copy.deepcopy(reference))
    assert find_classification_layer(reference) == name
    assert model.head.weight is not reference.get_submodule(name).weight  # the copy's own head
    torch.testing.assert_close(model.extractor(x), inputs[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x), logits, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


def test_a_given_head_name_and_a_timm_like_model():
    model = split_classifier(WithClassifier(), head_name="classifier.0")  # the first layer of the head, by name
    assert model.head.out_features == 5 and isinstance(model.extractor.classifier[0], nn.Identity)

    class TimmLike(WithFc):  # timm's interface without forward_intermediates: features, no exits
        def forward_features(self, x):
            return self.conv(x).relu()

        def forward_head(self, x, pre_logits=False):
            x = x.mean(dim=(2, 3))
            return x if pre_logits else self.fc(x)

        def get_classifier(self):
            return self.fc

    torch.manual_seed(0)
    reference, x = TimmLike(), torch.randn(2, 1, 8, 8)
    model = split_classifier(copy.deepcopy(reference))
    assert isinstance(model.extractor, TimmFeatures)
    torch.testing.assert_close(model.extractor(x), reference.forward_head(reference.forward_features(x), True))
    torch.testing.assert_close(model(x), reference(x))
    with pytest.raises(NotImplementedError, match="no layer-wise exits"):
        model.exits(x)


def test_a_model_without_a_head_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"Sequential \(it has none of classifier, .*heads.head\): .*head_name="):
        split_classifier(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="'fc' of WithFc"):
        split_classifier(_no_linear_fc())
    with pytest.raises(ValueError, match="WithFc has no module named 'head'"):
        split_classifier(WithFc(), head_name="head")


def _no_linear_fc():
    model = WithFc()
    model.fc = nn.Identity()
    return model


def test_library_models_are_named_by_prefix():
    assert [library_of(name) for name in ("timm:resnet18", "torchvision:vit_b_16", "resnet18", "bert:x", "./a:b")] \
        == ["timm", "torchvision", None, None, None]


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_a_missing_library_is_one_line_before_any_data_loads(monkeypatch, capsys, tmp_path, library):
    monkeypatch.setitem(sys.modules, library, None)  # `import timm` raises ImportError, installed or not
    with pytest.raises(ModuleNotFoundError, match=rf'--model {library}:resnet18 needs {library} .*pip install "itra\[timm\]"'):
        check_library_model(f"{library}:resnet18")
    # a data directory that does not exist: the model's library is checked first
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent", "--model", f"{library}:resnet18",
                 "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "itra[timm]" in err and "\n" not in err


@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_pretrained_is_only_for_library_models(capsys, tmp_path, model):
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent", "--model", model, "--pretrained",
                 "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--pretrained is for --model timm:<name> or torchvision:<name>" in err and "\n" not in err
    assert not any(tmp_path.iterdir())
