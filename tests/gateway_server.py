"""Run a real smolgate server (uvicorn, loopback, free port) in a background thread for tests, configured by the
same function as `smolgate serve`."""

from __future__ import annotations

import threading
import time

import uvicorn

from smolgate.config import Config, parse_config
from smolgate.server.app import Gateway
from smolgate.server.serving import uvicorn_config


class GatewayServer:
    def __init__(self, cfg: Config | str) -> None:
        self.cfg = parse_config(cfg) if isinstance(cfg, str) else cfg
        self.app = Gateway(self.cfg)
        # exactly as `smolgate serve` runs it (limits protocol included), on the plain asyncio loop
        self._server = uvicorn.Server(uvicorn_config(self.app, "127.0.0.1", 0, loop="asyncio"))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + 180  # a local model loads first: slow when the machine is shared
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
