"""SigLIP vision encoder as used by SmolVLM / Idefics3: conv patchify, learned positions, pre-LN ViT, post-LN.

Module names equal the checkpoint names under `model.vision_model.`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import rowsplit
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


# bf16 sequences are padded to a multiple of this (padded keys masked): CPU flash attention runs odd lengths far
# slower (so400m, 16 heads x 72: 729 keys 5.1 ms, 736 keys 3.6 ms per layer).
ATTN_ALIGN = 16


@functools.cache
def fused_linear_available() -> bool:
    """Whether oneDNN's bf16 linear with a fused epilogue (GELU) runs here: x86 builds of torch, on a CPU with
    AVX-512 (with AVX2 only, or ONEDNN_MAX_CPU_ISA=AVX2, torch refuses bf16 oneDNN ops and the plain ops run)."""
    try:
        x, w = torch.ones(2, 8, dtype=torch.bfloat16), torch.ones(4, 8, dtype=torch.bfloat16)
        gelu = torch.ops.mkldnn._linear_pointwise(x, w, None, "gelu", [], "tanh")
        return gelu.shape == (2, 4)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def dense_weight(linear: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The bf16 [N, K] weight to run `linear` on x [..., K] with the fused bf16 kernels below, or None to call the
    layer itself: fp32 keeps the reference's exact ops, and a quantized layer decides by its kernels (at many rows
    a weight-only layer dequantizes anyway; a W8A8 layer never does)."""
    if x.dtype != torch.bfloat16:
        return None
    if type(linear) is nn.Linear:
        return linear.weight
    dequantize = getattr(linear, "dense_weight", None)  # QuantLinear (quant.py imports this package)
    return dequantize(x.numel() // x.shape[-1]) if dequantize is not None else None


def linear_gelu(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(linear(x)), the GELU fused into oneDNN's GEMM where it can be (2.2B tile, fc1: 5.6 -> 3.5 ms).
    Compiled, inductor fuses it with the bias instead (it cannot lower this oneDNN op on a runtime weight)."""
    fusable = not torch.compiler.is_compiling() and fused_linear_available()
    if fusable and (w := dense_weight(linear, x)) is not None:
        return torch.ops.mkldnn._linear_pointwise(x, w, linear.bias, "gelu", [], "tanh")
    return gelu_tanh(linear(x))


def linear_add(linear: nn.Module, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + linear(x); in bf16 the residual is the GEMM's accumulator input (one pass less; faster than
    oneDNN's fused add, which reorders the weight on every call)."""
    if (w := dense_weight(linear, x)) is None:
        return residual + linear(x)
    out = rowsplit.addmm(residual.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1]), w)
    if isinstance(bias := linear.bias, torch.Tensor):
        out += bias
    return out.view(residual.shape)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation. Compiled, as x * sigmoid(2z), the same function (0.5 * (1 + tanh z) =
    sigmoid(2z)): inductor's vectorized sigmoid is 2.6x faster than its tanh (729 x 4304 bf16: 1.05 vs 2.7 ms)."""
    if torch.compiler.is_compiling():
        xf = x.float()
        return (xf * torch.sigmoid(1.5957691216057308 * (xf + 0.044715 * xf * xf * xf))).to(x.dtype)
    return F.gelu(x, approximate="tanh")


class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.qkv_proj: nn.Module | None = None  # set by fuse_qkv (engine/fuse.py) in place of q/k/v_proj

    def fuse_qkv(self, qkv: nn.Module) -> None:
        """Replace q/k/v_proj by one layer whose output is theirs concatenated."""
        del self.q_proj, self.k_proj, self.v_proj
        self.qkv_proj = qkv

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
        """-> residual + attention(x)"""
        b, n, _ = x.shape
        if self.qkv_proj is not None:
            q, k, v = self.qkv_proj(x).view(b, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        else:
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
        return linear_add(self.fc2, linear_gelu(self.fc1, x), residual)


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


def run_layer(layer: EncoderLayer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return layer(x, mask)


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
        # how each encoder layer is called: engine/compiled.py swaps in a compiled one
        self.run_layer: Callable[[EncoderLayer, torch.Tensor, torch.Tensor | None], torch.Tensor] = run_layer

    @torch.inference_mode()
    def warm_up(self) -> None:
        """Encode blank passes of one and two tiles, so the GEMM shapes requests meet most are measured now
        (rowsplit.py) rather than in a request."""
        dtype = self.post_layernorm.weight.dtype
        for tiles in (1, 2):
            self(torch.zeros(tiles, 3, self.cfg.image_size, self.cfg.image_size, dtype=dtype))

    def forward(self, pixels: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixels [N, 3, S, S] (S = image_size), patch_mask [N, S/p, S/p] bool or None -> [N, patches, D]."""
        if patch_mask is not None and bool(patch_mask.all()):
            patch_mask = None
        x = self.embeddings(pixels, patch_mask)
        b, n, _ = x.shape
        # Padded patches are hidden from every query as keys; their own outputs are ignored downstream.
        keys = None if patch_mask is None else patch_mask.reshape(b, n)
        if (pad := -n % ATTN_ALIGN) and x.dtype == torch.bfloat16:  # fp32 keeps the reference's exact shapes
            x = F.pad(x, (0, 0, 0, pad))
            keys = F.pad(torch.ones(b, n, dtype=torch.bool) if keys is None else keys, (0, pad), value=False)
        mask = None if keys is None else keys[:, None, None, :]
        for layer in self.encoder.layers:
            x = self.run_layer(layer, x, mask)  # type: ignore[arg-type]  # (a ModuleList of EncoderLayer)
        return self.post_layernorm(x[:, :n])
