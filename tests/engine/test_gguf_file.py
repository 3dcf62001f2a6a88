"""Our GGUF reader (engine/gguf_file.py) against gguf-py's GGUFReader on the packaged file: the same metadata and
the same tensors; and files that are not whole GGUFs are one clear error naming the file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from fixtures import gguf_reader

from smolgate.engine.engine import packaged_gguf_path
from smolgate.engine.gguf_file import GGUFError, GGUFFile


def test_metadata_and_tensors_equal_gguf_py() -> None:
    ours, theirs = GGUFFile(packaged_gguf_path()), gguf_reader()
    stored = {k: f for k, f in theirs.fields.items() if not k.startswith("GGUF.")}  # (its header, as fields)
    assert list(ours.fields) == list(stored)
    for key, field in stored.items():
        assert ours.fields[key] == field.contents(), key
    assert len(ours.fields["tokenizer.ggml.tokens"]) == 49152
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors, strict=True):
        assert (a.shape, a.tensor_type) == (tuple(int(d) for d in b.shape), b.tensor_type), a.name
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, a.name
        assert np.array_equal(a.data, b.data), a.name


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (lambda b: b"GGML" + b[4:], "not a GGUF file (bad magic)"),
        (lambda b: b[:4] + (9).to_bytes(4, "little") + b[8:], "GGUF version 9 is not supported"),
        (lambda b: b[:1000], "not a readable GGUF file"),  # metadata cut short
        (lambda b: b[: len(b) - 4096], "runs past the end of the file"),  # tensor data cut short
        (lambda b: b"", "not a GGUF file"),
    ],
)
def test_broken_files_are_one_clear_error(tmp_path: Path, cut: object, expected: str) -> None:
    data = packaged_gguf_path().read_bytes()
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(cut(data))  # type: ignore[operator]
    with pytest.raises(GGUFError, match=r"broken\.gguf") as err:
        GGUFFile(bad)
    assert expected in str(err.value)


def _header(n_tensors: int, n_fields: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_fields)


def _string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # metadata nested deeper than Python recurses: arrays of arrays of ...
        (_header(0, 1) + _string("k") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 100_000, "not a readable"),
        # dimensions whose product wraps around in 64 bits
        (_header(1, 0) + _string("t") + struct.pack("<I", 2) + struct.pack("<QQ", 2**62, 8) + struct.pack("<IQ", 0, 0),
         "runs past the end of the file"),
    ],
    ids=["nested-arrays", "huge-dims"],
)  # fmt: skip
def test_hostile_metadata_is_one_clear_error(tmp_path: Path, body: bytes, expected: str) -> None:
    bad = tmp_path / "hostile.gguf"
    bad.write_bytes(body)
    with pytest.raises(GGUFError, match=r"hostile\.gguf") as err:
        GGUFFile(bad)
    assert expected in str(err.value)
