"""SmolVLM / SmolVLM2 / Idefics3 (and text-only SmolLM2): vision encoder -> connector -> Llama decoder -> lm_head.

One class serves both: a text-only checkpoint simply has no vision tower. Image features replace the `<image>`
token embeddings in order (tile k fills the k-th run of image_seq_len placeholders), as the reference does.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable

import torch
from torch import nn

from ..config import ModelConfig
from ..kvcache import KVCache
from ..vision_cache import FeatureCache, tile_key
from .connector import Connector
from .text import DecodeLayerRunner, TextModel, run_decode_layer
from .vision import VisionModel

# checkpoint prefix -> our module prefix; first match wins (the VLM prefixes must precede plain Llama's "model.").
_PREFIXES = (
    ("model.vision_model.", "vision."),
    ("model.connector.", "connector."),
    ("model.text_model.", "text."),
    ("model.", "text."),
    ("lm_head.", "lm_head."),
)
_IGNORED = re.compile(r".*(rotary_emb\.inv_freq|\.num_batches_tracked)$")
TILES_PER_PASS = 8  # vision tiles per encoder pass: bounds activation memory (a 64-frame video is 64 tiles)


def checkpoint_to_module_name(name: str) -> str | None:
    """Map an HF checkpoint tensor name to our parameter name (None for tensors we do not use)."""
    if _IGNORED.match(name):
        return None
    for src, dst in _PREFIXES:
        if name.startswith(src):
            return dst + name[len(src) :]
    return None


class SmolVLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = VisionModel(cfg.vision) if cfg.vision is not None else None
        self.connector = (
            Connector(cfg.vision.hidden_size, cfg.text.hidden_size, cfg.scale_factor)
            if cfg.vision is not None
            else None
        )
        self.text = TextModel(cfg.text)
        self.lm_head = nn.Linear(cfg.text.hidden_size, cfg.text.vocab_size, bias=False)
        self.feature_cache = FeatureCache()  # encoded tiles by content hash: follow-ups skip the encoder

    @property
    def dtype(self) -> torch.dtype:
        return self.text.dtype

    def load_weights(self, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Assign (checkpoint name, tensor) pairs to parameters without copying (model may be on `meta`).

        Tensors arrive one at a time already in the target dtype, so peak memory is the model plus one tensor.
        """
        params = dict(self.named_parameters())
        missing = set(params)
        for name, tensor in tensors:
            ours = checkpoint_to_module_name(name)
            if ours is None:  # e.g. a stored rotary inv_freq buffer
                continue
            if ours not in params:
                raise KeyError(f"unexpected checkpoint tensor {name!r}")
            if tuple(tensor.shape) != tuple(params[ours].shape):
                raise ValueError(
                    f"{name}: checkpoint shape {tuple(tensor.shape)} != model {tuple(params[ours].shape)}"
                )
            module_name, _, attr = ours.rpartition(".")
            setattr(self.get_submodule(module_name), attr, nn.Parameter(tensor, requires_grad=False))
            missing.discard(ours)
        if "lm_head.weight" in missing and self.cfg.text.tie_word_embeddings:
            self.lm_head.weight = self.text.embed_tokens.weight  # tied: one tensor, two uses
            missing.discard("lm_head.weight")
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")

    def encode_images(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """pixel_values [N, 3, S, S] (tiles in token order), optional pixel_mask [N, S, S] -> [N, seq, hidden].

        All-zero tiles (batch padding in the reference processor) are dropped, as the reference does.
        """
        return _drain(self.encode_passes(pixel_values, pixel_mask))

    def encode_passes(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> Generator[None, None, torch.Tensor]:
        """`encode_images` one encoder pass at a time: yields after each pass of up to TILES_PER_PASS tiles, so
        the caller can interleave other work (the scheduler runs decode steps in between); returns the features."""
        if self.vision is None or self.connector is None:
            raise ValueError("this model has no vision encoder")
        pixel_values = pixel_values.to(self.dtype)
        real = pixel_values.flatten(1).ne(0).any(dim=1)
        if not bool(real.all()):
            pixel_values = pixel_values[real]
            pixel_mask = pixel_mask[real] if pixel_mask is not None else None
        patch_mask = None
        if pixel_mask is not None:
            p = self.vision.cfg.patch_size
            patch_mask = pixel_mask.unfold(1, p, p).unfold(2, p, p).sum(dim=(-1, -2)) > 0  # [N, S/p, S/p]
        keys = [
            tile_key(pixel_values[i], patch_mask[i] if patch_mask is not None else None)
            for i in range(pixel_values.shape[0])
        ]
        found = [self.feature_cache.get(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        for start in range(0, len(todo), TILES_PER_PASS):  # only tiles not seen before hit the encoder
            idx = todo[start : start + TILES_PER_PASS]
            mask = patch_mask[idx] if patch_mask is not None else None
            feats = self.connector(self.vision(pixel_values[idx], mask))
            for j, i in enumerate(idx):
                found[i] = feats[j]
                self.feature_cache.put(keys[i], feats[j])
            yield
        return torch.stack(found)  # type: ignore[arg-type]

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] (+ tiles) -> input embeddings [B, T, hidden] with image features spliced in."""
        return _drain(self.embed_passes(input_ids, pixel_values))

    def embed_passes(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None
    ) -> Generator[None, None, torch.Tensor]:
        """`embed`, yielding after each vision-encoder pass (see encode_passes); returns the embeddings."""
        x = self.text.embed_tokens(input_ids)
        if pixel_values is None:
            return x
        features = (yield from self.encode_passes(pixel_values)).reshape(-1, x.shape[-1])  # [N*seq, hidden]
        assert self.cfg.image_token_id is not None  # every VLM config has one
        slots = input_ids.eq(self.cfg.image_token_id)  # [B, T]
        n_slots = int(slots.sum())
        if n_slots != features.shape[0]:
            raise ValueError(
                f"prompt has {n_slots} <image> tokens but the images give {features.shape[0]} features"
            )
        x = x.clone()
        x[slots] = features.to(x.dtype)  # boolean indexing walks (B, T) row-major: tile order == token order
        return x

    def forward(
        self,
        x: torch.Tensor,
        pos: int = 0,
        *,
        last_only: bool = True,
        row: int = 0,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """Embeddings [B, T, hidden] at positions pos.. (cache rows row..) -> logits [B, V] (last position) or
        [B, T, V]. Without `caches`, a one-off pass from position 0 (TextModel.forward)."""
        h = self.text(x, pos, row=row, caches=caches)
        if last_only:
            h = h[:, -1]
        return self.lm_head(h)

    def decode_rows(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        kv_len: int,
        caches: list[KVCache],
        run_layer: DecodeLayerRunner = run_decode_layer,
    ) -> torch.Tensor:
        """tokens [n, 1] for cache rows 0..n-1 at their own positions [n] -> logits [n, V] (the batched step;
        `run_layer` runs each decoder layer: TextModel.decode_rows)."""
        h = self.text.decode_rows(self.text.embed_tokens(tokens), positions, kv_len, caches, run_layer)
        return self.lm_head(h[:, 0])


def _drain(steps: Generator[None, None, torch.Tensor]) -> torch.Tensor:
    """Run a pass generator to the end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def build_model(cfg: ModelConfig, tensors: Iterable[tuple[str, torch.Tensor]]) -> SmolVLM:
    """Construct on the meta device (no allocation), then assign the checkpoint tensors (already in the model's
    dtype) in place."""
    with torch.device("meta"):
        model = SmolVLM(cfg)
    model.load_weights(tensors)
    model.eval().requires_grad_(False)
    return model
