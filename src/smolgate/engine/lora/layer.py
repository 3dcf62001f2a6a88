"""A projection with LoRA adapters beside it: base(x) + per-row (x @ A_s^T) @ B_s^T, where row i of the batch
uses adapter slot s_i (or none).

One LoraLinear wraps any served projection (dense, GEMV, int8/int4, fused q/k/v or gate/up), leaving the base
layer and its kernels untouched. A fused layer's adapters cover output slices: the per-slice A's are stacked along
the rank and B is block-diagonal (zeros elsewhere), so one adapter is still two small GEMMs whatever it targets.
Which slot each row uses is set per forward pass on the model's shared AdapterRows (`rows(...)` in attach.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# What one pass uses: None (no adapter: the base path alone), one slot for every row (a prefill, a vision pass),
# or one slot per leading batch row, -1 for none (a mixed decode step).
Selection = int | list[int] | None


@dataclass
class AdapterRows:
    """The selection of the pass in progress, shared by every LoraLinear of one model."""

    selection: Selection = None
    # slot -> device tensors cached per selection (row groups), rebuilt when the selection changes
    _groups: dict[int, torch.Tensor] = field(default_factory=dict)
    _key: tuple[int, ...] = ()

    def groups(self) -> dict[int, torch.Tensor]:
        """The per-row selection as {slot: row indices}, rows without an adapter left out."""
        assert isinstance(self.selection, list)
        key = tuple(self.selection)
        if key != self._key:
            by_slot: dict[int, list[int]] = {}
            for row, slot in enumerate(key):
                if slot >= 0:
                    by_slot.setdefault(slot, []).append(row)
            self._groups = {s: torch.tensor(rows) for s, rows in by_slot.items()}
            self._key = key
        return self._groups


class LoraLinear(nn.Module):
    """`base` plus the low-rank updates of every loaded adapter that targets it."""

    def __init__(self, base: nn.Module, state: AdapterRows) -> None:
        super().__init__()
        self.base = base
        self.state = state
        self.a: dict[int, torch.Tensor] = {}  # slot -> [R, in]
        self.b: dict[int, torch.Tensor] = {}  # slot -> [out, R], scale folded in

    def set_adapter(self, slot: int, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a[slot], self.b[slot] = a, b

    def drop_adapter(self, slot: int) -> None:
        self.a.pop(slot, None)
        self.b.pop(slot, None)

    def _delta(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a[slot], self.b[slot]
        return (x @ a.to(x.dtype).T) @ b.to(x.dtype).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        sel = self.state.selection
        if sel is None or not self.a:
            return y
        if isinstance(sel, int):
            return y + self._delta(sel, x) if sel in self.a else y
        for slot, rows in self.state.groups().items():
            if slot in self.a:
                y = y.index_add(0, rows, self._delta(slot, x.index_select(0, rows)))
        return y
