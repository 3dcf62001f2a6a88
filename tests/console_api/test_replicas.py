"""Two gateway replicas sharing one Redis (`state:`): a console session signed in on one opens the other (one
admin key, one signing key), and signing out on one ends it on both."""

from __future__ import annotations

import shutil
import subprocess
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from smolgate.console.sessions import COOKIE
from tests.console_api.conftest import ADMIN, signed_in
from tests.gateway_server import GatewayServer
from tests.pool.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if shutil.which("redis-server") is None:
        subprocess.run(["sh", str(ROOT / "scripts" / "ensure_redis.sh")], check=True)
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv.url
    srv.stop()


def test_signing_out_on_one_replica_ends_the_session_on_every_replica(redis_url, tmp_path):
    cfg = f"data_dir: {tmp_path}\nstate: {redis_url}\nserver: {{admin_key: {ADMIN}}}\n"
    with GatewayServer(cfg) as a, GatewayServer(cfg) as b:
        c, csrf = signed_in(a)
        cookie = {"cookie": f"{COOKIE}={c.cookies[COOKIE]}"}
        with closing(c):
            assert httpx.get(b.url + "/admin/health", headers=cookie).status_code == 200
            r = c.delete("/ui/api/session", headers={"x-smolgate-csrf": csrf})
            assert r.status_code == 204
        for gw in (a, b):
            assert httpx.get(gw.url + "/admin/health", headers=cookie).status_code == 401
            assert httpx.get(gw.url + "/ui/api/session", headers=cookie).status_code == 401
