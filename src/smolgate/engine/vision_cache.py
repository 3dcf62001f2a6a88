"""Encoded image tiles, cached by content hash.

A follow-up question about the same image (the common chat pattern) re-sends identical pixels; its tiles
are looked up instead of re-running the vision encoder, which dominates time-to-first-token on CPU.
Bounded by bytes (LRU); thread-safe because requests embed images from their own threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch


def tile_key(tile: torch.Tensor, mask: torch.Tensor | None) -> bytes:
    h = hashlib.blake2b(tile.contiguous().view(torch.uint8).numpy().tobytes(), digest_size=16)
    h.update(str((tuple(tile.shape), tile.dtype)).encode())
    if mask is not None:
        h.update(mask.contiguous().view(torch.uint8).numpy().tobytes())
    return h.digest()


class FeatureCache:
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.encoded = 0  # tiles that went through the encoder (observable in tests)

    def __deepcopy__(
        self, memo: dict[int, object]
    ) -> FeatureCache:  # a copied model starts with an empty cache
        return FeatureCache(self.max_bytes)

    def get(self, key: bytes) -> torch.Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return value

    def put(self, key: bytes, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            self.encoded += 1
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
