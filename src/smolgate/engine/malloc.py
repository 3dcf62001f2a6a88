"""glibc malloc settings for loading a model and for serving it (a no-op where libc is not glibc).

Loading reads each checkpoint tensor, quantizes it and drops it. With glibc's default (dynamic) mmap threshold,
freeing one large mmapped block raises the threshold, so later blocks of that size come from the heap, and once
freed they stay there as holes, resident (figures: docs/performance.md). While loading, large blocks are
therefore always mmapped (returned on free), and the heap is trimmed at the end.

Serving wants the opposite: activations of the same sizes come and go every step, and a fresh mmap per tensor
costs a page fault per 4 KiB, several times the work on those pages. So after loading, blocks up to 32 MiB come
from the heap and the heap keeps up to 256 MiB of free memory at its top instead of trimming it after every step.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter numbers
LOADING_MMAP_THRESHOLD = 1 << 20
SERVING_MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for this setting on 64-bit
SERVING_TRIM_THRESHOLD = 256 << 20


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _set(param: int, value: int) -> None:
    if (libc := _glibc()) is not None:
        libc.mallopt(param, value)


def trim() -> None:
    """Return free heap memory to the OS."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around a model load: big transient blocks are mmapped (so freeing returns them); afterwards the heap is
    trimmed and the serving settings apply (for the whole process: glibc has one setting)."""
    _set(_M_MMAP_THRESHOLD, LOADING_MMAP_THRESHOLD)
    try:
        yield
    finally:
        trim()
        serving()


def serving() -> None:
    _set(_M_MMAP_THRESHOLD, SERVING_MMAP_THRESHOLD)
    _set(_M_TRIM_THRESHOLD, SERVING_TRIM_THRESHOLD)
