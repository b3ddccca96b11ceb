"""ATA's parameter-free alignment and the temporal attention along aligned patches."""

from __future__ import annotations

import pytest
import torch

from features.ata import (
    ATAViT,
    TemporalAttention,
    align_patches,
    gather_patches,
    scatter_patches,
)


def _shifted_clip(frames: int = 4, grid: int = 4, dim: int = 8, seed: int = 0) -> torch.Tensor:
    """Patch features ``[1, T, N, C]`` of a clip whose frame t is frame 0 moved t patches to
    the right (circularly): the content at (row, col) in frame 0 is at (row, col + t)."""
    gen = torch.Generator().manual_seed(seed)
    first = torch.randn(grid, grid, dim, generator=gen)
    clip = torch.stack([torch.roll(first, shifts=t, dims=1) for t in range(frames)])
    return clip.reshape(1, frames, grid * grid, dim)


def test_a_shifted_clip_aligns_each_patch_to_its_shifted_position():
    grid = 4
    perm = align_patches(_shifted_clip(grid=grid))
    for t in range(4):
        expected = [r * grid + (c + t) % grid for r in range(grid) for c in range(grid)]
        assert perm[0, t].tolist() == expected, t
    # slot n holds the same content in every frame once aligned
    aligned = gather_patches(_shifted_clip(grid=grid), perm)
    assert torch.allclose(aligned, aligned[:, :1].expand_as(aligned))


def test_identical_frames_keep_their_order_and_put_back_inverts_gather():
    clip = _shifted_clip(frames=1).expand(2, 3, -1, -1).contiguous()
    perm = align_patches(clip)
    assert torch.equal(perm, torch.arange(16).repeat(2, 3, 1))
    shifted = _shifted_clip()
    p = align_patches(shifted)
    assert torch.equal(scatter_patches(gather_patches(shifted, p), p), shifted)


def test_aligned_attention_follows_the_motion_and_plain_does_not():
    torch.manual_seed(0)
    clip = _shifted_clip(frames=3, dim=16)  # fewer frames than columns: no wrap-around cover
    aligned, plain = TemporalAttention(16, 2, "aligned"), TemporalAttention(16, 2, "plain")
    plain.load_state_dict(aligned.state_dict())
    # zero-initialised output projection: both start as the identity
    assert torch.equal(aligned(clip), clip) and torch.equal(plain(clip), clip)
    for module in (aligned, plain):
        torch.nn.init.normal_(module.attn.out_proj.weight)
    # along aligned trajectories every frame holds the same content, so each frame's output
    # is frame 0's output moved with the content; at fixed positions it is not
    out = aligned(clip)
    expected = torch.roll(out[0, 0].reshape(4, 4, 16), shifts=2, dims=1).reshape(16, 16)
    torch.testing.assert_close(out[0, 2], expected, atol=1e-5, rtol=1e-5)
    moved = plain(clip)
    plain_expected = torch.roll(moved[0, 0].reshape(4, 4, 16), shifts=2, dims=1).reshape(16, 16)
    assert not torch.allclose(moved[0, 2], plain_expected, atol=1e-3)


def test_gradients_reach_the_temporal_attention_through_the_alignment():
    torch.manual_seed(0)
    module = TemporalAttention(16, 2, "aligned")
    torch.nn.init.normal_(module.attn.out_proj.weight)
    clip = _shifted_clip(dim=16).requires_grad_(True)
    module(clip).pow(2).sum().backward()
    assert module.attn.in_proj_weight.grad.abs().sum() > 0
    assert clip.grad is not None and torch.isfinite(clip.grad).all()


@pytest.mark.parametrize("temporal", ["aligned", "plain"])
def test_vit_shapes(temporal):
    model = ATAViT(
        num_classes=5,
        frames=4,
        image_size=32,
        patch_size=8,
        dim=32,
        depth=2,
        heads=4,
        temporal=temporal,
    )
    clips = torch.randn(2, 3, 4, 32, 32)
    assert model(clips).shape == (2, 5) and model.features(clips).shape == (2, 32)
    with pytest.raises(ValueError, match="clips"):
        model(torch.randn(2, 3, 5, 32, 32))
    with pytest.raises(ValueError, match="temporal"):
        TemporalAttention(8, 2, "other")


# ------------------------------------------------- what the alignment compares (features.ata.match)


def _embedded_shift(grid: int = 4, dim: int = 16, frames: int = 3):
    """Content moving one patch to the right per frame (``_shifted_clip``) plus a large
    learned-like position embedding: a space part per patch (the same in every frame) and a
    time part per frame (the same for every patch), 10 times the content's scale."""
    content = _shifted_clip(frames=frames, grid=grid, dim=dim, seed=1)
    gen = torch.Generator().manual_seed(2)
    space = 10 * torch.randn(1, 1, grid * grid, dim, generator=gen)
    time = 10 * torch.randn(1, frames, 1, dim, generator=gen)
    return content, space + time


def _shift_perm(grid: int, frames: int) -> list[list[int]]:
    return [
        [r * grid + (c + t) % grid for r in range(grid) for c in range(grid)] for t in range(frames)
    ]


def test_content_matching_follows_the_content_and_position_matching_stays():
    """Hand case: content moves one patch per frame under a large position embedding. The
    content matching (ATA's alignment by appearance, the default) follows it; the earlier
    matching on tokens with the embedding keeps every patch in place."""
    grid, frames = 4, 3
    content, position = _embedded_shift(grid, frames=frames)
    tokens = content + position
    new = TemporalAttention(16, 2, "aligned")  # match="content" by default
    old = TemporalAttention(16, 2, "aligned", match="with_position")
    assert new.match == "content"
    assert new.alignment(tokens, position)[0].tolist() == _shift_perm(grid, frames)
    stay = torch.arange(grid * grid).repeat(frames, 1)
    assert torch.equal(old.alignment(tokens, position)[0], stay)
    # without the embedding both compare the same tokens and both follow the content
    assert old.alignment(content)[0].tolist() == _shift_perm(grid, frames)
    with pytest.raises(ValueError, match="match"):
        TemporalAttention(8, 2, "aligned", match="position")


def test_vit_matches_patch_content_without_its_position_embedding():
    """The whole network: frames shifted 8 px (one patch) per frame give patch tokens
    shifted one patch (the patch embedding is a strided convolution); with a large space
    embedding the first block's alignment follows the content only with match=content."""
    torch.manual_seed(0)
    frames, size, patch = 3, 32, 8
    first = torch.rand(1, 3, 1, size, size) * 2 - 1
    clips = torch.cat([torch.roll(first, shifts=patch * t, dims=4) for t in range(frames)], 2)
    perms = {}
    for match in ("content", "with_position"):
        model = ATAViT(5, frames=frames, image_size=size, patch_size=patch, dim=16, match=match)
        with torch.no_grad():
            model.space.normal_(0.0, 10.0)
        assert model.arch["match"] == match
        temporal = model.blocks[0].temporal
        perms[match] = temporal.alignment(model.tokens(clips), model.position())[0]
        assert model(clips).shape == (1, 5)
    grid = size // patch
    assert perms["content"].tolist() == _shift_perm(grid, frames)
    assert torch.equal(perms["with_position"], torch.arange(grid * grid).repeat(frames, 1))
