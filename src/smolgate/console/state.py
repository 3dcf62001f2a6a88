"""What the console keeps while the gateway runs (one per Runtime): sign-outs, recent requests, wire captures,
and the app's current authenticator (rebuilt by a config reload), which the session calls use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import ConsoleConfig
from ..telemetry import RequestRecord
from .recent import RecentRequests
from .sessions import Revocations
from .wire import WireStore

if TYPE_CHECKING:
    from ..pool.state_redis import SharedState
    from ..server.auth import Authenticator


class ConsoleState:
    def __init__(
        self,
        cfg: ConsoleConfig,
        shared: Callable[[], SharedState | None],
        cost: Callable[[RequestRecord], float],
    ) -> None:
        self.revocations = Revocations(shared)
        self.recent = RecentRequests(cfg.recent_requests, cost)
        self.wire = WireStore()
        self.auth: Authenticator | None = None  # set by the app (server/app.py)
