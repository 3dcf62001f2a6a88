"""SigLIP vision encoder as used by SmolVLM / Idefics3: conv patchify, learned positions, pre-LN ViT, post-LN.

Module names equal the checkpoint names under `model.vision_model.`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig


def navit_position_ids(patch_mask: torch.Tensor, patches_per_side: int) -> torch.Tensor:
    """patch_mask [B, h, w] bool (valid patches) -> position ids [B, h*w] into the side x side table.

    An image of nh x nw valid patches is spread over the learned grid by bucketing the fractional coordinates
    i*(1/nh), j*(1/nw) (NaViT-style). This is the reference's arithmetic, float32 rounding included: for
    full tiles it equals arange at the real sizes (32, 27 patches per side) but not at every size (e.g. 19, 25),
    and the weights were trained with this path, so it is used for full tiles too. Padded patches get id 0.
    """
    b, h, w = patch_mask.shape
    boundaries = torch.arange(1 / patches_per_side, 1.0, 1 / patches_per_side)
    step_h = 1.0 / patch_mask[:, :, 0].sum(dim=1)  # [B]
    step_w = 1.0 / patch_mask[:, 0, :].sum(dim=1)  # [B]
    frac_h = (torch.arange(h, dtype=torch.float32)[None, :] * step_h[:, None]).clamp(max=1.0 - 1e-6)  # [B, h]
    frac_w = (torch.arange(w, dtype=torch.float32)[None, :] * step_w[:, None]).clamp(max=1.0 - 1e-6)  # [B, w]
    bh = torch.bucketize(frac_h, boundaries, right=True)
    bw = torch.bucketize(frac_w, boundaries, right=True)
    ids = (bh[:, :, None] * patches_per_side + bw[:, None, :]).reshape(b, -1)
    return torch.where(patch_mask.reshape(b, -1), ids, torch.zeros_like(ids))


class Embeddings(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(
            3, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.hidden_size)

    def forward(self, pixels: torch.Tensor, patch_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.patch_embedding(pixels)  # [B, D, h, w]
        b, _, h, w = x.shape
        if patch_mask is None:  # full tiles
            patch_mask = torch.ones(b, h, w, dtype=torch.bool)
        ids = navit_position_ids(patch_mask, self.cfg.patches_per_side)  # [B, h*w]
        return x.flatten(2).transpose(1, 2) + self.position_embedding(ids)


@functools.cache
def fused_linear_available() -> bool:
    """Whether oneDNN's linear with a fused epilogue (GELU, residual add) runs here (x86 builds of torch)."""
    try:
        x, w = torch.ones(2, 8, dtype=torch.bfloat16), torch.ones(4, 8, dtype=torch.bfloat16)
        gelu = torch.ops.mkldnn._linear_pointwise(x, w, None, "gelu", [], "tanh")
        added = torch.ops.mkldnn._linear_pointwise(x, torch.ones(2, 4, dtype=torch.bfloat16), w, None, "add")
        return gelu.shape == added.shape == (2, 4)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _fusable(linear: nn.Module, x: torch.Tensor) -> bool:
    """bf16 through a plain Linear (not a quantized one): the epilogue saves a pass over the activation
    (2-tile so400m batch: 702 -> 630 ms per tile for GELU alone). fp32 keeps the reference's exact ops."""
    return x.dtype == torch.bfloat16 and type(linear) is nn.Linear and fused_linear_available()


def linear_add(linear: nn.Linear, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + linear(x), the add fused into the GEMM where it can be."""
    if _fusable(linear, x):
        return torch.ops.mkldnn._linear_pointwise(x, residual, linear.weight, linear.bias, "add")
    return residual + linear(x)


class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
        """-> residual + attention(x)"""
        b, n, _ = x.shape
        q, k, v = (
            p(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # bidirectional
        return linear_add(self.out_proj, out.transpose(1, 2).reshape(b, n, -1), residual)


class MLP(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """-> residual + mlp(x)"""
        fc1 = self.fc1
        if _fusable(fc1, x):  # its GELU is evaluated in fp32 before rounding to bf16
            h = torch.ops.mkldnn._linear_pointwise(x, fc1.weight, fc1.bias, "gelu", [], "tanh")
        else:
            h = F.gelu(fc1(x), approximate="tanh")
        return linear_add(self.fc2, h, residual)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = Attention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.self_attn(self.layer_norm1(x), mask, residual=x)
        return self.mlp(self.layer_norm2(x), residual=x)


class Encoder(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))


class VisionModel(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixels: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixels [N, 3, S, S] (S = image_size), patch_mask [N, S/p, S/p] bool or None -> [N, patches, D]."""
        if patch_mask is not None and bool(patch_mask.all()):
            patch_mask = None
        x = self.embeddings(pixels, patch_mask)
        # Padded patches are hidden from every query as keys; their own outputs are ignored downstream.
        mask = None if patch_mask is None else patch_mask.reshape(pixels.shape[0], 1, 1, -1)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.post_layernorm(x)
