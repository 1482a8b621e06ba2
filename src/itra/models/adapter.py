"""Any classifier as `Classifier(extractor, head)`: the penultimate features h (B, D) of a user's model.

    from itra.models.adapter import split_classifier
    model = split_classifier(timm.create_model("resnet18", num_classes=10))   # or a torchvision / plain model
    h = model.extractor(images)                                               # (B, D), the head's input
    logits = model.head(h)                                                    # the model's own logits

A timm model (one with `forward_features`, `forward_head` and `get_classifier`) gives h as
`forward_head(forward_features(x), pre_logits=True)`, timm's own pre-logits. Any other model (torchvision,
a plain `nn.Module`) gives h as the input of its final linear layer, found by name (`find_classification_layer`,
which `ITRATrainer` uses too) or given as `head_name`. Either way the head is taken out of the model and
replaced by `nn.Identity` in place, so the extractor computes exactly what reached the head (dropout before it
included) and `Classifier.forward` is the model's own forward, with no pass run twice; keep the returned
`Classifier` rather than the model. (A forward hook on the head would leave the model whole, but every pass would
also compute the logits, and the extractor would not be a module of its own.)
"""
from __future__ import annotations

import torch
from torch import nn

from itra.models.classifier import Classifier
from itra.errors import BadValue

# Where common models keep their final linear layer (searched in this order). Hugging Face heads: BERT, DistilBERT,
# ALBERT, DeBERTa, ViT `classifier`; RoBERTa, ELECTRA `classifier.out_proj`; XLNet `logits_proj`; GPT-2, Llama
# `score`; BART, T5 `classification_head.out_proj`. torchvision: ResNet `fc`; VGG, MobileNet, EfficientNet,
# ConvNeXt `classifier`; Swin `head`; ViT `heads.head`.
HEAD_NAMES = ("classifier", "logits_proj", "score", "classification_head", "fc", "head", "heads.head")


def find_classification_layer(model: nn.Module, head_name: str | None = None) -> str:
    """The name of the linear layer whose input is the penultimate feature h (B, D).

    `head_name`, or else the first of `HEAD_NAMES` that `model` has, names the head; a head that is not
    itself an `nn.Linear` gives its last one (RoBERTa's `classifier` -> `classifier.out_proj`).
    """
    modules = dict(model.named_modules())
    model_name = type(model).__name__
    if head_name is None:
        head_name = next((name for name in HEAD_NAMES if name in modules), None)
        if head_name is None:
            raise BadValue(f"Cannot find the classification layer of {model_name} (it has none of "
                             f"{', '.join(HEAD_NAMES)}): name it with head_name='<module name>'")
    elif head_name not in modules:
        raise BadValue(f"{model_name} has no module named {head_name!r}: pass head_name= one of the names in "
                         "model.named_modules()")
    linears = [name for name, module in modules[head_name].named_modules(prefix=head_name)
               if isinstance(module, nn.Linear)]
    if not linears:
        raise BadValue(f"{head_name!r} of {model_name} holds no nn.Linear: name the classification layer with "
                         "head_name='<module name>'")
    return linears[-1]


class TimmFeatures(nn.Module):
    """A timm model's pre-logits: images (B, C, H, W) -> h = forward_head(forward_features(x), pre_logits=True)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


class TimmLayeredFeatures(TimmFeatures):
    """`TimmFeatures` with an exit after every layer of timm's `forward_intermediates` (a ResNet's stem and stages,
    a ViT's blocks): each layer's output, normalised by the final norm and pooled by the model's own
    `forward_head(pre_logits=True)`, as h itself is, so the last exit is h. Prefix tokens (a ViT's class token)
    are put back before pooling, as `forward_features` keeps them."""

    @property
    def exit_dims(self) -> list[int]:
        return [info["num_chs"] for info in self.model.feature_info]

    def exits(self, images: torch.Tensor) -> list[torch.Tensor]:
        model = self.model
        if not getattr(model, "num_prefix_tokens", 0):
            layers = model.forward_intermediates(images, norm=True, intermediates_only=True)  # (B, C_l, H_l, W_l)
            return [model.forward_head(x, pre_logits=True) for x in layers]
        layers = model.forward_intermediates(images, norm=True, intermediates_only=True, output_fmt="NLC",
                                             return_prefix_tokens=True)  # [((B, T, D), (B, P, D))]
        return [model.forward_head(torch.cat((prefix, tokens), dim=1), pre_logits=True) for tokens, prefix in layers]


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `model` has its submodule `name` (dotted, as in `named_modules`)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def is_timm_model(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("forward_features", "forward_head", "get_classifier"))


def split_classifier(model: nn.Module, head_name: str | None = None,
                     example_input: torch.Tensor | tuple[torch.Tensor, ...] | None = None) -> Classifier:
    """`model` as `Classifier(extractor, head)`, its head replaced by `nn.Identity` in place (module docstring).

    A timm model (unless `head_name` is given) splits at its pre-logits, with layer-wise exits where it has
    `forward_intermediates` and every layer's width is known (`feature_info`) and the last is the head's input;
    any other model splits at the input of `find_classification_layer(model, head_name)`.

    A split by name can be wrong and still run: a forward that does more after its head (`log_softmax(self.fc(h))`:
    the extractor would return log_softmax(h)), or a layer named like a head that is not the last (a hidden `fc`
    before the real head `out`). With `example_input` (a batch, or a tuple of the forward's inputs) the split is
    verified: `head(extractor(x))` must equal `model(x)` (its `.logits` for a Hugging Face output), both in eval
    mode without gradient, or the model is left whole and the split refused. Give one whenever you can; itra gives
    one for the timm and torchvision models it builds (`itra.models.libraries`).

    Args:
        model: the classifier, built with its K classes; it is changed in place (its head becomes `nn.Identity`).
        head_name: the name of its final linear layer in `model.named_modules()` (default: timm's classifier, or
            the first of `HEAD_NAMES` it has).
        example_input: a batch (B, ...) the model takes, or a tuple of its forward's inputs, to verify the split.

    Returns:
        A `Classifier`: `.extractor(x)` gives h (B, D), the head's input; `.head(h)` the logits (B, K); calling it
        is the model's own forward.

    Raises:
        BadValue: `model` is not an `nn.Module`; it has no linear head by that name; the split does not give the
            model's own logits on `example_input`.

    Example:
        >>> from collections import OrderedDict
        >>> import torch
        >>> from torch import nn
        >>> from itra.models.adapter import split_classifier
        >>> model = nn.Sequential(OrderedDict(body=nn.Linear(4, 8), act=nn.ReLU(), fc=nn.Linear(8, 3)))
        >>> x = torch.randn(2, 4)
        >>> logits = model(x)
        >>> classifier = split_classifier(model, example_input=x)  # `fc` found by name, the split verified on x
        >>> classifier.head
        Linear(in_features=8, out_features=3, bias=True)
        >>> classifier.extractor(x).shape  # h, the head's input
        torch.Size([2, 8])
        >>> torch.equal(classifier(x), logits)
        True
    """
    if not isinstance(model, nn.Module):
        raise BadValue(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__} {model!r}: build the "
                       "model first (e.g. timm.create_model(name, num_classes=K)) and pass it")
    timm = head_name is None and is_timm_model(model)
    if timm:
        head = model.get_classifier()
        head_name = next((name for name, module in model.named_modules() if module is head), None)
    else:
        head_name = find_classification_layer(model, head_name)
        head = model.get_submodule(head_name)
    if not isinstance(head, nn.Linear) or head_name is None:
        raise BadValue(f"Expected the head of {type(model).__name__} to be an nn.Linear module of it, but got "
                         f"{type(head).__name__}: build the model with num_classes >= 1, or name its head with head_name=")
    inputs = None if example_input is None else example_input if isinstance(example_input, tuple) else (example_input,)
    expected = None
    if inputs is not None:
        try:
            expected = _eval_logits(model, model, inputs)
        except (RuntimeError, TypeError, ValueError) as error:  # the user's input to the user's model, at the boundary
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise BadValue(f"split_classifier: {type(model).__name__} does not run on example_input "
                           f"({type(error).__name__}: {reason}); pass a batch it takes") from None
        if not isinstance(expected, torch.Tensor):
            raise BadValue(f"split_classifier: {type(model).__name__} returns {type(expected).__name__}, not logits "
                           "to verify the split against: leave example_input out")
    replace_module(model, head_name, nn.Identity())
    if not timm:
        split = Classifier(model, head)
    else:
        layered = hasattr(model, "forward_intermediates") and \
            [info["num_chs"] for info in getattr(model, "feature_info", [])][-1:] == [head.in_features]
        split = Classifier((TimmLayeredFeatures if layered else TimmFeatures)(model), head)
    if expected is not None:
        try:
            got = _eval_logits(split, model, inputs)
        except RuntimeError:  # e.g. a hidden layer taken for the head: the next layer gets the wrong width
            got = None
        if got is None or got.shape != expected.shape or not torch.allclose(
                got.float(), expected.float(), rtol=1e-4, atol=1e-5 * max(1.0, float(expected.abs().max()))):
            replace_module(model, head_name, head)  # the user's model as it was
            raise BadValue(f"split_classifier: head(extractor(x)) differs from the output of {type(model).__name__} on "
                           f"example_input when split at {head_name!r}: its forward does more after that layer (a "
                           "softmax?) or it is not the last one; name the last linear layer with head_name=, or build "
                           "Classifier(extractor, head) yourself")
    return split


def _eval_logits(module: nn.Module, model: nn.Module, inputs: tuple) -> object:
    """`module(*inputs)` in eval mode without gradient (no dropout draw, no batch-norm update), `model`'s training
    flag restored; a Hugging Face output gives its `.logits`."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = module(*inputs)
    finally:
        model.train(training)
    return getattr(output, "logits", output)
