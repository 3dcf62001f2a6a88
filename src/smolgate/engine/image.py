"""Image preprocessing for SmolVLM: RGB, longest-edge resize, square tiles + global view, normalisation.

Mirrors the PIL path of transformers' SmolVLM/Idefics3 image processors (the path the models were trained with):
PIL LANCZOS for every resize, uint8 pixels between resizes, float64 rescale then float32 normalise.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

MAX_IMAGE_SIZE = 4096  # transformers caps the resized longest edge at 4k
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The preprocessor_config.json fields that change the output."""

    tile_size: int = 512  # max_image_size.longest_edge: the vision encoder's square input
    longest_edge: int = 2048  # size.longest_edge: every image is scaled so its longest edge is exactly this
    split: bool = True  # do_image_splitting
    resize: bool = True  # do_resize
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True, slots=True)
class Tiles:
    """Crops in token order (row-major tiles, then the global view). rows == cols == 0: one unsplit image."""

    images: list[Image.Image]
    rows: int
    cols: int


def load_image(source: bytes | str | Path | Image.Image) -> Image.Image:
    """Decode and apply the EXIF orientation (as transformers' load_image does); PIL images pass through."""
    if isinstance(source, Image.Image):
        return source
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot decode image: {exc}") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white (a bare convert('RGB') would turn it black)."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def fit_longest_edge(height: int, width: int, longest: int) -> tuple[int, int]:
    """Scale (up or down) so the longest edge equals `longest`; the other edge is truncated, then made even."""
    aspect = width / height
    if width >= height:
        width, height = longest, int(longest / aspect)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    return _cap(height, width, MAX_IMAGE_SIZE)


def _cap(height: int, width: int, limit: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height and width > limit:
        width, height = limit, int(limit / aspect)
    elif height > width and height > limit:
        height, width = limit, int(limit * aspect)
    return max(height, 1), max(width, 1)


def fit_tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """Round both edges up to whole tiles. The short edge is derived from the rounded long edge (aspect drifts)."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


def _resize(img: Image.Image, height: int, width: int) -> Image.Image:
    return img if img.size == (width, height) else img.resize((width, height), resample=LANCZOS)


def tile_image(img: Image.Image, cfg: ImageConfig) -> Tiles:
    """RGB image -> tiles as the model expects them. Row/col counts drive the prompt's <row_r_col_c> markers."""
    if cfg.resize:
        img = _resize(img, *fit_longest_edge(img.height, img.width, cfg.longest_edge))
    m = cfg.tile_size
    if not cfg.split:
        return Tiles([_resize(img, m, m)], 0, 0)
    img = _resize(img, *fit_tile_grid(img.height, img.width, m))
    if img.height <= m and img.width <= m:
        return Tiles([img], 0, 0)
    rows, cols = img.height // m, img.width // m
    crops = [img.crop((c * m, r * m, (c + 1) * m, (r + 1) * m)) for r in range(rows) for c in range(cols)]
    return Tiles([*crops, _resize(img, m, m)], rows, cols)


def to_pixel_values(images: list[Image.Image], cfg: ImageConfig) -> torch.Tensor:
    """uint8 HWC images of one size -> float32 [n, 3, H, W] in [-1, 1] (for mean = std = 0.5).

    numpy, not torch: this runs in the caller's thread, and a thread that runs a torch parallel op keeps an
    OpenMP pool that slows the engine's compute thread (scheduler.py)."""
    batch = np.stack([np.asarray(img, dtype=np.uint8) for img in images]).transpose(0, 3, 1, 2)
    # float64 multiply then float32, exactly like transformers' rescale, so results match bit for bit.
    x = (batch.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return torch.from_numpy(np.ascontiguousarray((x - mean) / std))


def preprocess_image(
    source: bytes | str | Path | Image.Image, cfg: ImageConfig
) -> tuple[torch.Tensor, Tiles]:
    tiles = tile_image(to_rgb(load_image(source)), cfg)
    return to_pixel_values(tiles.images, cfg), tiles
