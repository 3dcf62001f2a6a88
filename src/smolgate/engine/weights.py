"""Find a checkpoint (local dir, HF cache, or download) and stream its safetensors tensors in the target dtype."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

# Files a SmolVLM / SmolLM2 checkpoint needs; ONNX exports and other weight formats are skipped when downloading.
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]


class ModelNotFound(FileNotFoundError):
    """The model source is neither a local path, nor cached, nor downloadable right now."""


def hub_cache_dir() -> Path:
    """The HF hub cache as the environment says *now* (huggingface_hub reads its env vars once, at import)."""
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_source(source: str, *, revision: str | None = None) -> Path:
    """Local file/dir as is; else a repo id from the HF cache; else download it (see `download`)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise ModelNotFound(
            f"model source {source!r} is not an existing path and not a Hugging Face repo id (org/name)"
        )
    return cached_snapshot(source, revision=revision) or download(source, revision=revision)


def cached_snapshot(repo_id: str, *, revision: str | None = None) -> Path | None:
    """The repo's snapshot directory in the HF cache, or None (never touches the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(repo_id, revision=revision, cache_dir=hub_cache_dir(), local_files_only=True)
        )
    except LocalEntryNotFoundError:
        return None


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """Fetch a checkpoint into the HF cache (huggingface_hub shows progress bars) and return its snapshot dir.

    Only the files the engine reads are fetched (no ONNX exports). Raises ModelNotFound with an actionable
    message when offline (HF_HUB_OFFLINE=1) or when the hub cannot be reached or does not have the repo.
    """
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    if is_offline():
        raise ModelNotFound(
            f"model {repo_id!r} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids "
            f"downloading it; download it on a connected machine (`smolgate pull {repo_id}`) or pass a local "
            "directory"
        )
    try:
        return Path(
            snapshot_download(repo_id, revision=revision, cache_dir=cache, allow_patterns=_DOWNLOAD_PATTERNS)
        )
    except Exception as exc:  # network, auth, unknown repo: one clear message, cause chained
        raise ModelNotFound(f"could not download model {repo_id!r} from the Hugging Face Hub: {exc}") from exc


def read_json(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class SafetensorsCheckpoint:
    """A single-file or sharded safetensors checkpoint, read lazily through memory maps."""

    def __init__(self, directory: Path) -> None:
        index = directory / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            self.files = [directory / s for s in shards]
        else:
            self.files = sorted(directory.glob("*.safetensors"))
        if not self.files:
            raise ModelNotFound(f"no *.safetensors weights in {directory}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape, read from the headers only."""
        out: dict[str, tuple[int, ...]] = {}
        for file in self.files:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():  # safe_open is not iterable
                    out[name] = tuple(f.get_slice(name).get_shape())
        return out

    def tensors(self, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) one at a time, floating tensors cast to `dtype`, so the model is the only full copy.

        Tensors are read with pread rather than through a memory map: mapped checkpoint pages count in the
        process's resident set until the whole file is unmapped (a whole fp32 checkpoint would show up as RSS
        while loading a far smaller int8 model); read pages stay in the page cache only.
        """
        for file in self.files:
            header_len, header = _read_header(file)
            fd = os.open(file, os.O_RDONLY)
            try:
                for name, info in header.items():
                    if name == "__metadata__":
                        continue
                    start, end = info["data_offsets"]
                    buf = bytearray(end - start)
                    view, got = memoryview(buf), 0
                    while got < len(buf):  # pread may return short reads for large tensors
                        n = os.preadv(fd, [view[got:]], 8 + header_len + start + got)
                        if n <= 0:
                            raise OSError(f"{file}: truncated tensor {name}")
                        got += n
                    t = (
                        torch.frombuffer(buf, dtype=_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
                        if buf
                        else torch.empty(info["shape"], dtype=_ST_DTYPES[info["dtype"]])
                    )
                    if t.is_floating_point() and t.dtype != dtype:
                        t = t.to(dtype)
                    yield name, t
            finally:
                os.close(fd)


_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_header(file: Path) -> tuple[int, dict[str, Any]]:
    """The safetensors layout: u64 little-endian header length, JSON header, then raw tensor bytes."""
    with open(file, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return length, json.loads(f.read(length))
