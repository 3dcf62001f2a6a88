"""`smolgate serve` run exposed: TLS from --ssl-certfile/--ssl-keyfile, and the descriptor limit raised at start
so the connection cap, not the OS, decides when connections are refused."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "sk-serve-client-0001"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(dir: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = dir / "cert.pem", dir / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certfile, keyfile


# The child starts with a small soft limit, as many distributions set it. A launcher sets it and execs, rather than
# Popen's preexec_fn, which can deadlock in a forked child of a process with threads (it hung a CI run).
_LOW_FD_LIMIT = (
    "import os, resource, sys\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


def test_serve_speaks_tls_and_raises_the_descriptor_limit(tmp_path):
    certfile, keyfile = _self_signed(tmp_path)
    cfg = tmp_path / "smolgate.yaml"
    cfg.write_text(
        "providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: x}]\n"
        f"keys:\n  - {{key: {KEY}}}\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LOW_FD_LIMIT,
            "-m",
            "smolgate.cli",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--ssl-certfile",
            str(certfile),
            "--ssl-keyfile",
            str(keyfile),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(
                    f"https://127.0.0.1:{port}/v1/models",
                    verify=str(certfile),
                    headers={"authorization": f"Bearer {KEY}"},
                    timeout=2,
                )
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stdout.read() if proc.stdout else ""
                )
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "m"
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files")).split()
        assert line[3] == line[4]  # soft raised to the hard limit
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_certificate_without_its_key_is_a_clear_error(tmp_path):
    certfile, _ = _self_signed(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "serve", "--port", "1", "--ssl-certfile", str(certfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        out.returncode == 2 and "--ssl-keyfile" in out.stdout + out.stderr and "Traceback" not in out.stderr
    )
