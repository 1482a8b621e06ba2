import math

import pytest
import torch
import torch.nn.functional as F

from itra.models.vit import VisionTransformer, sincos_position_embedding, small_vit


def images(batch: int = 3, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_sincos_position_embedding_matches_a_loop():
    height, width, dim = 2, 3, 8
    table = sincos_position_embedding(height, width, dim)
    assert table.shape == (height * width, dim)
    for r in range(height):
        for c in range(width):
            omegas = [10_000 ** -(k / (dim // 4 - 1)) for k in range(dim // 4)]
            expected = ([math.sin(c * w) for w in omegas] + [math.cos(c * w) for w in omegas]
                        + [math.sin(r * w) for w in omegas] + [math.cos(r * w) for w in omegas])
            torch.testing.assert_close(table[r * width + c].tolist(), expected, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4 and at least 8, but got 6"):
        sincos_position_embedding(2, 2, 6)


@torch.no_grad()
def test_embedding_and_pooling_match_a_slow_reference():
    """Tokens: each 4x4 patch, row-major, through one linear map, plus its position; h: mean of LayerNorm'd tokens."""
    torch.manual_seed(0)
    vit = VisionTransformer(in_channels=2, width=8, depth=1, heads=2).eval()
    x = images(2, channels=2, size=8)
    weight = vit.patch_embedding.weight.reshape(8, -1)  # (width, C * 4 * 4)
    positions = sincos_position_embedding(2, 2, 8)
    tokens = vit.embed(x)
    for b in range(2):
        for t, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            patch = x[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1)
            torch.testing.assert_close(tokens[b, t], weight @ patch + vit.patch_embedding.bias + positions[t])
    expected = torch.stack([F.layer_norm(token, (8,), vit.norm.weight, vit.norm.bias) for token in tokens[0]]).mean(0)
    torch.testing.assert_close(vit.pool(tokens)[0], expected)


@torch.no_grad()
def test_one_exit_per_block_and_the_last_is_the_head_s_features():
    torch.manual_seed(0)
    model = small_vit(10, width=32, depth=3).eval()
    x = images()
    exits = model.exits(x)
    assert [h.shape for h in exits] == [(3, 32)] * 3
    assert torch.equal(exits[-1], model.extractor(x))
    assert model.head(exits[0]).shape == (3, 10)  # one head reads every layer


def test_gradient_from_the_first_exit_reaches_the_patches_and_no_later_block():
    torch.manual_seed(0)
    model = small_vit(10, width=32, depth=3)
    F.cross_entropy(model.head(model.exits(images())[0]), torch.tensor([0, 1, 2])).backward()
    assert model.extractor.patch_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.extractor.blocks[1:].parameters())


def test_other_sizes_and_channels():
    torch.manual_seed(0)
    model = small_vit(7, in_channels=3, width=32, depth=2)
    assert model(images(2, channels=3, size=32)).shape == (2, 7)  # CIFAR: 8x8 = 64 tokens
    with pytest.raises(ValueError, match=r"multiples of the patch size 4, but got shape \(2, 3, 30, 30\)"):
        model(images(2, channels=3, size=30))


def test_default_size():
    model = small_vit(10)
    assert (model.feature_dim, len(model.extractor.blocks)) == (64, 6)
    assert sum(p.numel() for p in model.parameters()) == 301_770


def test_trains_on_random_data():
    torch.manual_seed(0)
    model = small_vit(4, width=32, depth=2)
    x, y = images(16), torch.arange(16) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]  # memorises 16 random images
