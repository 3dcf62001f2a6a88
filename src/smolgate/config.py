"""Configuration: YAML with `${ENV_VAR}` substitution, validated into typed structs.

Errors name the field path and the YAML line (`providers[0].protocol (line 4): …`), so `smolgate check`
can explain a bad file. Secrets are only ever held in `AccountConfig.api_key`; `__repr__` hides them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

Protocol = Literal["openai", "openai-responses", "anthropic", "gemini", "ollama", "local"]
Strategy = Literal["round_robin", "weighted", "least_in_flight", "rate_limit_aware"]


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class AccountConfig(Base):
    api_key: str | None = None
    name: str | None = None  # how logs and `smolgate accounts` refer to it (never by key)
    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float = 1.0
    enabled: bool = True

    def __repr__(self) -> str:  # never leak the key through a repr in a log line
        return f"AccountConfig(name={self.name!r}, api_key={'***' if self.api_key else None})"


class TimeoutConfig(Base):
    connect: float = 10.0
    first_byte: float = 120.0  # until the response headers (and, streaming, the first chunk)
    idle: float = 120.0  # between stream chunks
    total: float = 600.0


class BreakerConfig(Base):
    failures: int = 3  # consecutive failures that open the breaker
    cooldown: float = 10.0  # seconds before a half-open probe


class ProviderConfig(Base):
    name: str
    protocol: Protocol
    base_url: str = ""
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    strategy: Strategy = "round_robin"
    timeouts: TimeoutConfig = msgspec.field(default_factory=TimeoutConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    model: str | None = None  # protocol local: the checkpoint to load (dir, HF repo id or .gguf)
    quant: Literal["none", "int8", "int8-dynamic", "int4"] | None = None  # protocol local: quantization
    # protocol local: compute dtype. bf16 by default: batched decode scales ~6.5× at 8 streams in bf16 vs ~4×
    # in fp32 on this CPU class (bench/engine.py); float32 gives transformers-exact logits.
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    # protocol local: torch.compile the decode step at start (~35-50 s for 135M on 2 cores with inductor's cache
    # warm, ~2 min cold; 25-35% faster tokens on small models, engine/compiled.py)
    compile: bool = False
    queue_timeout: float = 10.0  # how long a request waits for a free account slot
    transport: Literal["h1", "aiohttp"] = "h1"  # aiohttp honours HTTP(S)_PROXY; h1 is faster


class Target(Base):
    provider: str
    model: str


class ModelAlias(Base):
    name: str
    targets: list[Target]
    fallbacks: list[str] = msgspec.field(default_factory=list)


class ClientKey(Base):
    key: str
    name: str | None = None
    rpm: int | None = None
    max_concurrency: int | None = None

    def __repr__(self) -> str:
        return f"ClientKey(name={self.name!r})"


class RetryConfig(Base):
    attempts: int = 6  # total upstream attempts per client request
    deadline: float = 120.0  # seconds across all attempts, before the first byte


class ServerConfig(Base):
    max_body_bytes: int = 32 * 1024 * 1024
    allow_private_image_urls: bool = False  # the image fetcher refuses loopback/private/metadata addresses


class Config(Base):
    providers: list[ProviderConfig] = msgspec.field(default_factory=list)
    models: list[ModelAlias] = msgspec.field(default_factory=list)
    keys: list[ClientKey] = msgspec.field(default_factory=list)
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    state: str | None = None  # redis://… to share pool state across replicas

    def provider(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)


class ConfigError(ValueError):
    pass


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(text: str, source: str) -> str:
    def repl(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1), m.group(2))
        if value is None:
            line = text.count("\n", 0, m.start()) + 1
            raise ConfigError(f"{source}:{line}: environment variable {m.group(1)} is not set "
                              f"(use ${{{m.group(1)}:-default}} for a default)")
        return value

    return _ENV.sub(repl, text)


def _line_of(node: yaml.Node | None, path: str) -> int | None:
    """Follow a msgspec error path like `$.providers[0].protocol` through the YAML node tree."""
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = part
        if isinstance(node, yaml.MappingNode) and key:
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and index:
            i = int(index)
            node = node.value[i] if i < len(node.value) else None
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def _check_references(cfg: Config) -> None:
    names = [p.name for p in cfg.providers]
    for dup in {n for n in names if names.count(n) > 1}:
        raise ConfigError(f"provider name '{dup}' is used twice")
    aliases = {m.name for m in cfg.models}
    for i, m in enumerate(cfg.models):
        for j, t in enumerate(m.targets):
            if t.provider not in names:
                raise ConfigError(f"models[{i}].targets[{j}].provider: no provider named '{t.provider}'")
        for fb in m.fallbacks:
            if fb not in aliases:
                raise ConfigError(f"models[{i}].fallbacks: no model alias named '{fb}'")
    for i, p in enumerate(cfg.providers):
        if p.protocol != "local" and not p.base_url:
            raise ConfigError(f"providers[{i}].base_url: required for protocol '{p.protocol}'")
        for j, a in enumerate(p.accounts):
            if a.name is None:
                a.name = f"{p.name}#{j}"


def parse_config(text: str, source: str = "<config>") -> Config:
    text = _substitute(text, source)
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        path = msg.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in msg else "$"
        line = _line_of(node, path)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {path.removeprefix('$.')}: {msg.split(' - at ')[0]}") from None
    _check_references(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from None
    return parse_config(text, str(p))
