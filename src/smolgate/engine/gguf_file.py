"""Reading a GGUF file: its metadata and its tensors' bytes, straight off one read-only mmap.

gguf-py's GGUFReader makes a numpy memmap view for every value it reads, ~1M of them for a tokenizer's 49k tokens
and 48k merges (3.5 s of the packaged model's start-up); here metadata is parsed with `struct` and only tensors
become arrays (views of the mmap, nothing copied). The layout (GGUF v2/v3, little-endian): magic, version,
tensor count, metadata count; metadata as (key, type, value); tensor infos as (name, dims, type, offset); tensor
data from the next multiple of `general.alignment` (32 by default).
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

_MAGIC = b"GGUF"
_ARRAY, _STRING = 9, 8
_SCALARS = {  # value type -> struct format
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_NUMPY = {
    0: "u1",
    1: "i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_PLAIN = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}


class GGUFError(ValueError):
    """Not a GGUF file we can read (the message names the file and why)."""


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # GGUF's order: the innermost (contiguous) dimension first
    tensor_type: GGMLQuantizationType
    data: (
        np.ndarray
    )  # F32/F16: the values, numpy order (reversed shape); other types: uint8 [rows, row bytes]


class GGUFFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            if f.read(4) != _MAGIC:  # (an empty file cannot even be mapped)
                raise GGUFError(f"{self.path.name}: not a GGUF file (bad magic)")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = memoryview(self._map)
        self._at = 0
        try:
            self.fields, self.tensors = self._parse()
        except (
            struct.error,
            UnicodeDecodeError,
            ValueError,
            KeyError,
            RecursionError,
        ) as exc:  # (arrays of arrays)
            if isinstance(exc, GGUFError):
                raise
            raise GGUFError(f"{self.path.name}: not a readable GGUF file ({exc})") from None

    def _parse(self) -> tuple[dict[str, Any], list[GGUFTensor]]:
        self._at = 4  # (the magic was checked before mapping)
        version = self._scalar("I")
        if version not in (2, 3):
            raise GGUFError(f"{self.path.name}: GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_fields = self._scalar("Q"), self._scalar("Q")
        fields = {}
        for _ in range(n_fields):
            key = self._string()
            fields[key] = self._value(self._scalar("I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(self._scalar("Q") for _ in range(self._scalar("I")))
            infos.append((name, dims, GGMLQuantizationType(self._scalar("I")), self._scalar("Q")))
        align = int(fields.get("general.alignment", 32))
        start = -(-self._at // align) * align
        return fields, [self._tensor(name, dims, kind, start + offset) for name, dims, kind, offset in infos]

    def _tensor(self, name: str, dims: tuple[int, ...], kind: GGMLQuantizationType, at: int) -> GGUFTensor:
        block, size = GGML_QUANT_SIZES[kind]
        count = math.prod(dims)  # exact: a hostile file's dims must not wrap around in int64
        if dims[0] % block:
            raise GGUFError(f"{self.path.name}: tensor {name}'s rows are not whole {kind.name} blocks")
        nbytes = count // block * size
        if at + nbytes > len(self._buf):
            raise GGUFError(f"{self.path.name}: tensor {name} runs past the end of the file (truncated?)")
        raw = np.frombuffer(self._buf, np.uint8, nbytes, at)
        numpy_shape = tuple(reversed(dims))
        if kind in _PLAIN:
            data = raw.view(_PLAIN[kind]).reshape(numpy_shape)
        else:
            data = raw.reshape(*numpy_shape[:-1], dims[0] // block * size)
        return GGUFTensor(name, dims, kind, data)

    def _scalar(self, fmt: str) -> Any:
        (v,) = struct.unpack_from("<" + fmt, self._buf, self._at)
        self._at += struct.calcsize(fmt)
        return v

    def _string(self) -> str:
        n = self._scalar("Q")
        s = bytes(self._buf[self._at : self._at + n]).decode("utf-8")
        self._at += n
        return s

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item, n = self._scalar("I"), self._scalar("Q")
            if item == _STRING:
                return [self._string() for _ in range(n)]
            if item == _ARRAY:
                return [self._value(_ARRAY) for _ in range(n)]
            dtype = np.dtype(_NUMPY[item])
            values = np.frombuffer(self._buf, dtype, n, self._at).tolist()
            self._at += n * dtype.itemsize
            return values
        return self._scalar(_SCALARS[kind])
