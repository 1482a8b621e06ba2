"""A small Vision Transformer (Dosovitskiy et al., 2021) in plain torch, for 28x28 images, with an exit after
every block for layer-wise similarity and multi-exit training.

    itra train --dataset fashion-mnist --model vit --method ce --optimizer adamw --lr 1e-3

The "simple ViT" of Beyer et al. (2022): 4x4 patches (a 28x28 image is 7x7 = 49 tokens), fixed 2-D sin-cos
position embeddings, pre-norm blocks, and no CLS token: h = mean over tokens of LayerNorm(tokens). Every exit
pools its block's tokens the same way, with the same final LayerNorm, so that one head reads every layer.
"""
from __future__ import annotations

import torch
from torch import nn

from itra.models.classifier import Classifier
from itra.errors import BadValue


def sincos_position_embedding(height: int, width: int, dim: int, temperature: float = 10_000.0) -> torch.Tensor:
    """Fixed 2-D position embeddings (height * width, dim), row-major: token (r, c) gets
    [sin(c w_k), cos(c w_k), sin(r w_k), cos(r w_k)] for k < dim / 4, with w_k = temperature^(-k / (dim / 4 - 1))."""
    if dim % 4 or dim < 8:
        raise BadValue(f"Expected the token width to be a multiple of 4 and at least 8, but got {dim}")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    omega = temperature ** -(torch.arange(dim // 4) / (dim // 4 - 1))  # (dim / 4,)
    rows, cols = rows.reshape(-1, 1) * omega, cols.reshape(-1, 1) * omega  # (T, dim / 4)
    return torch.cat((cols.sin(), cols.cos(), rows.sin(), rows.cos()), dim=1)


class VisionTransformer(nn.Module):
    """Images (B, C, H, W) -> patch tokens (B, T, width), T = (H / patch) (W / patch) -> `depth` pre-norm
    transformer blocks -> h = mean_t LayerNorm(tokens) (B, width). H and W must be multiples of `patch_size`."""

    def __init__(self, in_channels: int, patch_size: int = 4, width: int = 64, depth: int = 6, heads: int = 4,
                 mlp_ratio: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_embedding = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, mlp_ratio * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        # The fixed position embeddings, built once per (grid, device) and kept there: a forward does no CPU work.
        # Not a buffer: they are a function of the input size, not state (and DDP does not broadcast them).
        self._positions: dict[tuple[int, int, int, torch.device], torch.Tensor] = {}

    @property
    def feature_dim(self) -> int:
        return self.norm.normalized_shape[0]

    @property
    def exit_dims(self) -> list[int]:
        """The width of every exit: `feature_dim` after each of the `depth` blocks."""
        return [self.feature_dim] * len(self.blocks)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their positions added: (B, C, H, W) -> (B, T, width)."""
        if images.shape[-2] % self.patch_size or images.shape[-1] % self.patch_size:
            raise BadValue(f"Expected image height and width to be multiples of the patch size {self.patch_size}, "
                             f"but got shape {tuple(images.shape)}")
        patches = self.patch_embedding(images)  # (B, width, H / patch, W / patch)
        tokens = patches.flatten(2).transpose(1, 2)  # (B, T, width)
        key = (*patches.shape[-2:], tokens.shape[-1], tokens.device)
        if key not in self._positions:
            self._positions[key] = sincos_position_embedding(*key[:3]).to(tokens.device)  # (T, width) float32
        return tokens + self._positions[key].to(tokens.dtype)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The features of one layer: mean over tokens of LayerNorm(tokens), (B, T, width) -> (B, width)."""
        return self.norm(tokens).mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(images)
        for block in self.blocks:
            tokens = block(tokens)
        return self.pool(tokens)

    def exits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The pooled tokens after every block: `depth` tensors (B, width), the last one `forward(images)`.
        The patch embedding is no exit: it sees each patch alone."""
        tokens = self.embed(images)
        exits = []
        for block in self.blocks:
            tokens = block(tokens)
            exits.append(self.pool(tokens))
        return exits


def small_vit(num_classes: int, in_channels: int = 1, width: int = 64, depth: int = 6, heads: int = 4) -> Classifier:
    """`VisionTransformer` with 4x4 patches and MLPs 4x wide, features h (B, width), and a linear head.
    The defaults (302k parameters) take about 0.3 s per training step at batch 128 on 2 CPU cores (with
    OMP_WAIT_POLICY=PASSIVE; ten times more where OpenMP threads spin on a busy machine)."""
    extractor = VisionTransformer(in_channels, width=width, depth=depth, heads=heads)
    return Classifier(extractor, nn.Linear(extractor.feature_dim, num_classes))
