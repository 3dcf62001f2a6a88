"""Adapters on a served model: map PEFT module names onto the engine's (fused) modules, load / unload adapters
into slots, and select per pass which slot each batch row uses.

PEFT names modules as the base checkpoint does (`model.text_model.layers.0.self_attn.q_proj`); the engine's
checkpoint mapping turns that into ours (`text.layers.0.self_attn.q_proj`), and where the load-time swaps fused
q/k/v or gate/up (kernels/fuse.py) the adapter lands on an output slice of the fused layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..api import InputInvalid
from ..kernels.fuse import FusedGateUp, FusedQKV, FusedVisionQKV
from ..model.smolvlm import SmolVLM, checkpoint_to_module_name
from ..vision_cache import FeatureCache
from .layer import AdapterRows, LoraLinear, Selection
from .peft_format import AdapterError, LoraWeights, read_adapter

# fused parent -> {projection name: index of its slice}
_SLICES: dict[type[nn.Module], tuple[str, dict[str, int]]] = {
    FusedQKV: ("qkv_proj", {"q_proj": 0, "k_proj": 1, "v_proj": 2}),
    FusedVisionQKV: ("qkv_proj", {"q_proj": 0, "k_proj": 1, "v_proj": 2}),
    FusedGateUp: ("gate_up_proj", {"gate_proj": 0, "up_proj": 1}),
}


@dataclass(frozen=True)
class Target:
    """Where one checkpoint projection lives in the served model: a layer and the output slice it fills."""

    layer: str  # our module path of the layer that computes it
    start: int  # first output column
    width: int  # the layer's whole output width


def _slice_starts(parent: nn.Module, widths: int) -> tuple[int, ...]:
    if isinstance(parent, FusedQKV):
        q, k, _ = parent.sizes
        return (0, q, q + k)
    return tuple(i * widths for i in range(3 if isinstance(parent, FusedVisionQKV) else 2))


def resolve(model: nn.Module, checkpoint_module: str, out: int) -> Target:
    """A PEFT (checkpoint) module name whose projection has `out` outputs -> its Target in the served model."""
    ours = checkpoint_to_module_name(checkpoint_module + ".weight")
    if ours is None:
        raise AdapterError(f"adapter targets {checkpoint_module!r}, which this model does not have")
    path = ours.removesuffix(".weight")
    parent_path, _, leaf = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_path)
    except AttributeError as exc:
        raise AdapterError(f"adapter targets {checkpoint_module!r}, which this model does not have") from exc
    if (fused := _SLICES.get(type(parent))) is not None and leaf in fused[1]:
        attr, index = fused[0], fused[1][leaf]
        starts = _slice_starts(parent, out)
        total = sum(parent.sizes) if isinstance(parent, FusedQKV) else len(starts) * out
        return Target(f"{parent_path}.{attr}", starts[index], total)
    layer = getattr(parent, leaf, None)
    if isinstance(layer, LoraLinear):
        layer = layer.base
    if not isinstance(layer, nn.Module) or not hasattr(layer, "in_features"):
        raise AdapterError(f"adapter targets {checkpoint_module!r}, which is not a linear projection here")
    return Target(path, 0, out)


class SaltedFeatureCache(FeatureCache):
    """The model's encoded-tile cache, keyed also by the vision adapter in use: the same tile encodes differently
    under an adapter on the vision encoder or connector (text-only adapters share the base entries)."""

    def __init__(self, max_bytes: int, salt: Callable[[], bytes]) -> None:
        super().__init__(max_bytes)
        self.salt = salt

    def get(self, key: bytes) -> torch.Tensor | None:
        return super().get(key + self.salt())

    def put(self, key: bytes, value: torch.Tensor) -> None:
        super().put(key + self.salt(), value)


class Adapters:
    """The adapters loaded on one served model, by name; slots are small ints rows refer to."""

    def __init__(self, model: SmolVLM) -> None:
        self.model = model
        self.state = AdapterRows()
        self.slots: dict[str, int] = {}
        self._layers: dict[int, list[str]] = {}  # slot -> wrapped layer paths it touches
        self._vision: set[int] = set()  # slots of adapters that change image features (encoder / connector)
        # unloaded, but requests admitted before may still use them: slot -> layer paths, freed once none does
        self.retired: dict[int, list[str]] = {}
        # layer path -> (parent, attribute, its LoraLinear): in the model only during passes with adapter rows
        # (`rows`), so that passes without any keep the plain modules, and the compiled decode step's graphs
        # (traced on them) serve the base model's rows with adapters loaded, without a recompile
        self._wrappers: dict[str, tuple[nn.Module, str, LoraLinear]] = {}
        self._installed = False
        self._loads = 0
        self._lock = threading.Lock()
        model.feature_cache = SaltedFeatureCache(model.feature_cache.max_bytes, self._feature_salt)

    def _feature_salt(self) -> bytes:
        sel = self.state.selection
        return b"" if not isinstance(sel, int) or sel not in self._vision else b"@%d" % sel

    def _wrapped(self, path: str) -> LoraLinear:
        if (found := self._wrappers.get(path)) is None:
            parent_path, _, leaf = path.rpartition(".")
            parent = self.model.get_submodule(parent_path) if parent_path else self.model
            found = self._wrappers[path] = (parent, leaf, LoraLinear(getattr(parent, leaf), self.state))
        return found[2]

    def _install(self, on: bool) -> None:
        """Put the wrappers in the model (on) or the plain layers back, by dict entry: cheap per pass."""
        for parent, leaf, wrapper in self._wrappers.values():
            parent._modules[leaf] = wrapper if on else wrapper.base
        self._installed = on

    def wrappers(self) -> list[LoraLinear]:
        return [w for _, _, w in self._wrappers.values()]

    def load(self, name: str, directory: str | Path) -> int:
        """Read a PEFT adapter and serve it as `name` (replacing one of that name) -> its slot."""
        weights = read_adapter(directory)
        dtype = self.model.dtype
        stacked: dict[str, list[tuple[Target, LoraWeights]]] = {}
        for module, w in weights.items():
            target = resolve(self.model, module, w.b.shape[0])
            stacked.setdefault(target.layer, []).append((target, w))
        with self._lock:
            if name in self.slots:
                self._unload(name)
            # slots are never reused: a row still decoding with an unloaded adapter never meets another's weights
            self._loads += 1
            slot = self._loads
            for path, parts in stacked.items():
                a = torch.cat([w.a for _, w in parts])  # [sum r, in]
                b = torch.zeros(parts[0][0].width, a.shape[0])  # block-diagonal [out, sum r]
                col = 0
                for target, w in parts:
                    r, rows = w.a.shape[0], w.b.shape[0]
                    b[target.start : target.start + rows, col : col + r] = w.b * w.scale
                    col += r
                self._wrapped(path).set_adapter(slot, a.to(dtype), b.to(dtype))
            self._layers[slot] = list(stacked)
            self.slots[name] = slot
            if any(not p.startswith(("text.", "lm_head")) for p in stacked):
                self._vision.add(slot)
        return slot

    def _unload(self, name: str) -> None:
        slot = self.slots.pop(name)
        self.retired[slot] = self._layers.pop(slot)

    def unload(self, name: str) -> None:
        """Stop serving `name` (KeyError if it is not loaded) to new requests. Requests admitted before finish
        with it (a response does not change model halfway); its weights go when the last of them ends
        (`release_unused`). Its layers keep their wrappers (for other adapters)."""
        with self._lock:
            self._unload(name)

    def release_unused(self, in_use: Collection[int]) -> None:
        """Free the weights of unloaded adapters that no request uses any more (the scheduler, between steps)."""
        with self._lock:
            for slot in [s for s in self.retired if s not in in_use]:
                self._vision.discard(slot)
                for path in self.retired.pop(slot):
                    self._wrapped(path).drop_adapter(slot)

    def slot(self, name: str | None) -> int:
        """An adapter's slot; -1 for None (the base model)."""
        if name is None:
            return -1
        if name not in self.slots:
            raise KeyError(name)
        return self.slots[name]

    @contextmanager
    def rows(self, selection: Selection) -> Iterator[None]:
        """Run the passes inside with `selection` (see layer.Selection); -1 alone, or -1 for every row, means the
        base model: then the model keeps its plain layers."""
        previous = self.state.selection
        plain = selection is None or selection == -1 or (isinstance(selection, list) and max(selection) < 0)
        self.state.selection = None if plain else selection
        install = not plain and not self._installed
        if install:
            self._install(True)
        try:
            yield
        finally:
            if install:
                self._install(False)
            self.state.selection = previous


class _HasAdapters(Protocol):
    model: SmolVLM
    adapters: Adapters | None


def serving(scheduler: _HasAdapters) -> Adapters:
    """The scheduler's adapters, created on first use (a model without adapters keeps its plain layers)."""
    if scheduler.adapters is None:
        scheduler.adapters = Adapters(scheduler.model)
    return scheduler.adapters


def slot_of(scheduler: _HasAdapters, name: str | None) -> int:
    """The slot a request naming adapter `name` uses (-1: the base model); InputInvalid if none is loaded so."""
    if name is None:
        return -1
    if scheduler.adapters is None or name not in scheduler.adapters.slots:
        raise InputInvalid(f"no LoRA adapter named {name!r} is loaded", param="model")
    return scheduler.adapters.slots[name]
