"""The adapter and `--model timm:` / `torchvision:` against the real libraries.

They need timm and torchvision importable with this torch (a CUDA-build torch; `.ci/run` builds that venv): they
skip without them, unless ITRA_REQUIRE_TIMM=1 (as CI sets it), which makes a missing library a failure.
"""
import copy
import json
import os

import pytest
import torch

from itra.cli import main
from itra.models.adapter import split_classifier


def _library(name):
    try:
        return pytest.importorskip(name)
    except (pytest.skip.Exception, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
        if os.environ.get("ITRA_REQUIRE_TIMM") == "1":
            pytest.fail(f"ITRA_REQUIRE_TIMM=1 but {name} does not import: {error}")
        pytest.skip(f"{name} does not import with torch {torch.__version__}: {error}")


@pytest.fixture(scope="module")
def timm():
    return _library("timm")


@pytest.fixture(scope="module")
def torchvision():
    return _library("torchvision")


@pytest.mark.parametrize(("name", "size", "exits"), [("resnet18", {}, 5), ("vit_small_patch8_224", {"img_size": 16}, 12)])
def test_timm_features_are_its_pre_logits_and_the_last_exit(timm, name, size, exits):
    torch.manual_seed(0)
    reference = timm.create_model(name, num_classes=10, in_chans=1, **size).eval()
    x = torch.randn(3, 1, 16, 16)
    model = split_classifier(copy.deepcopy(reference))
    with torch.no_grad():
        want = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.extractor(x), want, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x), reference(x), atol=1e-6, rtol=0)
        layers = model.exits(x)
    assert len(layers) == exits and [h.shape[1] for h in layers] == model.exit_dims
    torch.testing.assert_close(layers[-1], want, atol=1e-6, rtol=0)


def test_torchvision_features_are_the_input_of_fc(torchvision):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    inputs = []
    reference.fc.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = reference(x)
        model = split_classifier(copy.deepcopy(reference))
        torch.testing.assert_close(model.extractor(x), inputs[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x), logits, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == 11_181_642  # torchvision's resnet18 with 10 classes


def _train(tmp_path, model, *flags):
    argv = ["train", "--dataset", "digits", "--model", model, "--method", "itra-c", "--epochs", "1",
            "--train-subset", "256", "--test-subset", "128", "--batch-size", "32", "--out", str(tmp_path), "--quiet"]
    assert main([*argv, *flags]) == 0
    (run_dir,) = tmp_path.glob(f"digits-{model.replace(':', '-')}-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished", summary
    return run_dir


@pytest.mark.parametrize("model", ["timm:resnet18", "torchvision:resnet18"])
def test_cli_trains_a_library_resnet_on_digits(timm, torchvision, tmp_path, model):
    _train(tmp_path, model)  # 8x8 grey: in_chans=1 for timm, a rebuilt 1-channel conv1 for torchvision


def test_torchvision_vit_takes_the_image_size(torchvision):
    from itra.models.libraries import build_library_model

    model = build_library_model("torchvision:vit_b_32", 10, (1, 32, 32))  # image_size=32: one 32-pixel patch
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10) and model.extractor(torch.randn(2, 1, 32, 32)).shape == (2, 768)


def test_cli_trains_a_timm_vit_and_measures_its_layers(timm, tmp_path):
    run_dir = _train(tmp_path, "timm:vit_small_patch8_224", "--exits", "shared")  # img_size=(8, 8): one patch
    assert main(["similarity", str(run_dir), "--out", str(tmp_path / "sim"), "--test-subset", "64"]) == 0
    layers = json.loads((tmp_path / "sim" / run_dir.name / "layers.json").read_text())
    assert len(layers["accuracy"]) == 12, layers.keys()


def test_unknown_names_are_one_line_errors(timm, torchvision, capsys, tmp_path):
    for model in ("timm:resnet7", "torchvision:resnet7"):
        assert main(["train", "--dataset", "digits", "--model", model, "--out", str(tmp_path), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "has no model 'resnet7'" in err and "\n" not in err


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Torch's hub directory and the Hugging Face cache, both empty: the weights on disk are only those a test puts
    in `<tmp_path>/torch/hub/checkpoints`."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def test_pretrained_weights_not_on_disk_are_one_line_before_any_data(timm, torchvision, empty_caches, capsys, tmp_path):
    for model in ("timm:resnet18", "torchvision:resnet18"):
        assert main(["train", "--dataset", "digits", "--model", model, "--pretrained", "--out", str(tmp_path / "runs"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "are not on disk" in err and "need the network" in err and "\n" not in err, err
    assert not (tmp_path / "runs").exists()


def test_torchvision_pretrained_loads_the_file_with_a_new_head_and_a_summed_grey_conv(torchvision, empty_caches, tmp_path):
    from itra.models.libraries import build_library_model

    torch.manual_seed(1)
    weights = torchvision.models.resnet18().state_dict()  # stands in for the ImageNet file, same names and shapes
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    torch.save(weights, empty_caches / url.rsplit("/", 1)[1])
    model = build_library_model("torchvision:resnet18", 10, (1, 8, 8), pretrained=True)
    state = model.state_dict()
    conv1 = next(v for k, v in state.items() if k.endswith("conv1.weight") and "layer" not in k)
    torch.testing.assert_close(conv1, weights["conv1.weight"].sum(dim=1, keepdim=True), atol=0, rtol=0)
    body = next(v for k, v in state.items() if k.endswith("layer4.1.conv2.weight"))
    assert torch.equal(body, weights["layer4.1.conv2.weight"])
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    run_dir = _train(tmp_path / "runs", "torchvision:resnet18", "--pretrained")
    assert "-pretrained-" in run_dir.name


def test_timm_pretrained_loads_the_file_through_timm(timm, empty_caches):
    from itra.models.libraries import build_library_model

    torch.manual_seed(2)
    weights = timm.create_model("resnet18").state_dict()
    url = timm.models.get_pretrained_cfg("resnet18").url
    torch.save(weights, empty_caches / url.rsplit("/", 1)[1])
    model = build_library_model("timm:resnet18", 10, (1, 8, 8), pretrained=True)
    state = model.state_dict()
    body = next(v for k, v in state.items() if k.endswith("layer4.1.conv2.weight"))
    assert torch.equal(body, weights["layer4.1.conv2.weight"])
    conv1 = next(v for k, v in state.items() if k.endswith("conv1.weight") and "layer" not in k)
    torch.testing.assert_close(conv1, weights["conv1.weight"].sum(dim=1, keepdim=True))  # timm's in_chans=1


WEIGHT_DAMAGES = ("empty", "truncated", "random", "text", "another model's")
# timm adapts a checkpoint to the model it builds (a new head, other input channels) and so loads it non-strictly:
# another model's weights load where names and shapes match, and timm logs a warning naming the keys that did not
WEIGHT_CASES = [(library, damage) for library in ("timm", "torchvision") for damage in WEIGHT_DAMAGES
                if (library, damage) != ("timm", "another model's")]


@pytest.mark.parametrize("library, damage", WEIGHT_CASES)
def test_a_damaged_pretrained_weights_file_is_one_line_naming_it(timm, torchvision, empty_caches, tmp_path, capsys,
                                                                 library, damage):
    """The weights file on disk, damaged: `--pretrained` refuses it in one line naming the file, not torch's
    unpickling error or load_state_dict's list of keys."""
    from itra.errors import UserError
    from itra.models.libraries import build_library_model

    module = timm if library == "timm" else torchvision
    build = module.create_model if library == "timm" else module.models.get_model
    url = (timm.models.get_pretrained_cfg("resnet18").url if library == "timm"
           else torchvision.models.get_model_weights("resnet18").DEFAULT.url)
    path = empty_caches / url.rsplit("/", 1)[1]
    torch.save(build("resnet34" if damage == "another model's" else "resnet18").state_dict(), path)
    content = path.read_bytes()
    if damage != "another model's":
        path.write_bytes({"empty": b"", "truncated": content[:len(content) // 2], "random": b"\xff" * 4096,
                          "text": b"This is not a checkpoint.\n"}[damage])
    with pytest.raises(UserError) as error:
        build_library_model(f"{library}:resnet18", 10, (1, 8, 8), pretrained=True)
    assert "\n" not in str(error.value) and str(path) in str(error.value), str(error.value)
    assert main(["train", "--dataset", "digits", "--model", f"{library}:resnet18", "--pretrained", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "note:" not in line]
    assert len(err) == 1 and str(path) in err[0], err
