"""Vision-to-text connector: pixel shuffle (space-to-depth) then one bias-free Linear.

Module names equal the checkpoint names under `model.connector.`.
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """x [B, side*side, E] -> [B, (side/r)^2, r*r*E]: each r x r block of patches becomes one token.

    Output tokens are row-major over the (side/r, side/r) grid; channels are ordered (row-in-block,
    col-in-block, E), i.e. einops `b (H hi) (W wi) e -> b (H W) (hi wi e)`.
    """
    b, n, e = x.shape
    side = int(n**0.5)
    x = x.view(b, side // r, r, side // r, r, e)  # [B, H, hi, W, wi, E]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, H, W, hi, wi, E]
    return x.reshape(b, (side // r) ** 2, r * r * e)


class ModalityProjection(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Connector(nn.Module):
    def __init__(self, vision_dim: int, text_dim: int, scale_factor: int) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.modality_projection = ModalityProjection(vision_dim * scale_factor**2, text_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, patches, vision_dim] -> [N, patches / r^2, text_dim]."""
        return self.modality_projection(pixel_shuffle(x, self.scale_factor))
