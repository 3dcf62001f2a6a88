"""Configuration: YAML with `${ENV_VAR}` substitution, validated into typed structs.

Errors name the file, the line of the offending key, the field path, the valid names or values and the nearest
one (`smolgate.yaml:4: providers[0].protocol: …`; config_errors.py), so `smolgate check` can explain a bad file.
`${VAR}` is substituted inside string values after the YAML is parsed, so an environment value is never re-read
as YAML (a ` #` in a key stays part of the key) and a `${VAR}` in a comment is ignored. Providers are a tagged
union by kind (remote | local). Every credential is a `Secret` (secret.py): it prints as `***` in reprs, logs
and `smolgate check`. docs/config.md describes every field (a test keeps it complete).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec
import yaml

from .config_errors import explain
from .policies.detectors import Detectors
from .protocols import UPSTREAM_PROTOCOLS
from .secret import Redactor, Secret, as_secret, redact_url

# A remote provider's protocol is any upstream protocol in the registry (a new protocol module needs no edit
# here); `local` is the engine's. msgspec checks the runtime Literal; the type checker sees a str.
if TYPE_CHECKING:
    RemoteProtocol = str
else:
    RemoteProtocol = Literal[UPSTREAM_PROTOCOLS]
Quant = Literal["auto", "none", "int8", "int8-dynamic", "int4"]  # auto: engine/cpu.py decides
Strategy = Literal["round_robin", "weighted", "least_in_flight", "rate_limit_aware"]
PrivacyPolicy = Literal["standard", "redact", "local"]  # policies/privacy.py


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class AccountConfig(Base):
    api_key: Secret | None = None
    name: str | None = None  # how logs and `smolgate accounts` refer to it (never by key)
    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float = 1.0
    enabled: bool = True

    def __post_init__(self) -> None:
        self.api_key = as_secret(self.api_key)


class TimeoutConfig(Base):
    """Upstream deadlines, in seconds (providers/http.py). Each is measured from the moment the request is sent."""

    connect: float = 10.0  # opening the TCP/TLS connection (counts toward first_byte)
    # Absolute: until the response headers and, for a stream, its first event. A byte dripped now and then
    # (or SSE comments) does not extend it.
    first_byte: float = 120.0
    # The longest a stream may go without a new event (progress, not bytes: pings and comments don't count);
    # also how long an error reply's body may take.
    idle: float = 120.0
    # Absolute: the whole call, streams included. An endless stream is cut here (the client gets its
    # protocol's in-stream error) and the account is freed.
    total: float = 600.0


class BreakerConfig(Base):
    failures: int = 3  # consecutive failures that open the breaker
    cooldown: float = 10.0  # seconds before a half-open probe


class UpstreamLimits(Base):
    """Caps on what an upstream may send back; past them the attempt fails with a 502."""

    max_response_bytes: int = 64 * 1024 * 1024  # a non-streaming body
    max_line_bytes: int = 16 * 1024 * 1024  # one SSE / NDJSON line (Gemini inline images are large)
    max_header_bytes: int = 64 * 1024  # all response headers together


class ProviderBase(Base, kw_only=True, tag_field="kind"):
    """What every provider has: a name, a protocol, and the pool of accounts the gateway picks from.

    The config's providers are a tagged union by kind (`RemoteProviderConfig` or `LocalProviderConfig`), so a
    field of the other kind (`quant:` on an OpenAI provider) is an unknown field, not silently ignored. The tag
    is derived from `protocol` before decoding (`_tag_providers`); it is never written in a config file.
    """

    name: str
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    strategy: Strategy = "round_robin"
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    queue_timeout: float = 10.0  # how long a request waits for a free account slot


class ProviderConfig(ProviderBase, kw_only=True, tag="remote"):
    """A provider reached over HTTP (providers/http.py)."""

    protocol: RemoteProtocol
    base_url: str = ""  # required (checked in `_check_references`, so tests can build one without it)
    timeouts: TimeoutConfig = msgspec.field(default_factory=TimeoutConfig)
    headers: dict[str, Secret] = msgspec.field(default_factory=dict)  # values may carry credentials
    limits: UpstreamLimits = msgspec.field(default_factory=UpstreamLimits)
    transport: Literal["h1", "aiohttp"] = "h1"  # aiohttp honours HTTP(S)_PROXY; h1 is faster

    def __post_init__(self) -> None:
        self.headers = {k: Secret(v) for k, v in self.headers.items()}

    def __repr__(self) -> str:  # base_url may carry user:password@ or ?key=: masked like every Secret
        fields = ", ".join(
            f"{f}={redact_url(v, query=True) if f == 'base_url' else v!r}"
            for f in self.__struct_fields__
            for v in [getattr(self, f)]
        )
        return f"ProviderConfig({fields})"


RemoteProviderConfig = ProviderConfig


ADAPTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class LocalProviderConfig(ProviderBase, kw_only=True, tag="local"):
    """The embedded engine (providers/local.py); needs the `engine` extra."""

    protocol: Literal["local"] = "local"
    model: str | None = None  # the checkpoint to load (dir, HF repo id or .gguf); None: the packaged default
    # Load-time quantization (none: full precision); auto: the file's own (int4 for a Q4 GGUF, none for bf16)
    quant: Quant | None = "auto"
    # Compute dtype; auto: bfloat16 on CPUs with native bf16, else float32 (engine/cpu.py). float32 gives
    # transformers-exact logits.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # torch.compile the decode step (engine/compiled.py). "background": serve at once with the eager step and
    # switch to the compiled one when it is ready (seconds to a minute, on one core); true: compile before the
    # model reports ready; false: eager only
    compile: bool | Literal["background"] = "background"
    # work per engine step, in prompt positions (engine scheduler.Limits.step_tokens): how long a long prompt's
    # chunk may hold everyone else's next token
    step_tokens: Annotated[int, msgspec.Meta(ge=1)] = 256
    # LoRA adapters in the PEFT format, name -> directory; clients pick one as `<provider>/<model>+<name>`
    adapters: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.adapters:
            if not ADAPTER_NAME.fullmatch(name):
                raise ValueError(
                    f"adapter name {name!r}: letters, digits, . _ - only (it becomes part of a model name)"
                )


AnyProvider = ProviderConfig | LocalProviderConfig


class Target(Base):
    provider: str
    model: str
    # Whether the model reasons (reasoning.py): true sends even effort hints, false never sends reasoning
    # fields, auto sends what the client asked and learns from the upstream's refusal.
    reasoning: bool | Literal["auto"] = "auto"
    # Whether the model sees images (policies/vision_bridge.py): false sends their descriptions instead, auto
    # learns it from the upstream's refusal, true always sends images.
    vision: bool | Literal["auto"] = "auto"
    adapter: str | None = None  # a LoRA adapter of the local provider `provider` (its `adapters:`)


class VisionBridgeConfig(Base):
    """The vision bridge (policies/vision_bridge.py); a field left out inherits (alias → global → default)."""

    model: str | None = None  # a local provider (`local` or `local/<model>`); None: the first one
    prompt: str | None = None  # what the local model is asked about each image
    max_images: int | None = None  # images one request may have described (cache hits are free)
    max_tokens: int | None = None  # the longest description
    mode: Literal["auto", "off"] | bool | None = None  # a bare `off` is YAML's false: the same


CacheRequests = Literal["deterministic", "all"]


class AliasCache(Base):
    """One alias's response-cache settings; unset fields take the global `cache:` values."""

    enabled: bool = True
    ttl: float | None = None
    requests: CacheRequests | None = None


class CacheConfig(Base):
    """The response cache (policies/cache.py): exact match on the canonical request, per client key."""

    enabled: bool = False
    ttl: float = 300.0  # seconds an answer is served again
    max_entries: int = 1000  # memory backend; one entry larger than max_bytes/8 is never kept
    max_bytes: int = 64 << 20
    requests: CacheRequests = "deterministic"  # deterministic: temperature 0 or a seed; all: every request
    backend: Literal["auto", "memory", "redis"] = "auto"  # auto: redis when `state:` is set, else memory


class ModelAlias(Base):
    name: str
    targets: list[Target]
    fallbacks: list[str] = msgspec.field(default_factory=list)
    # auto: mark prompt-cache breakpoints for Anthropic targets when the client set none (caching.py)
    prompt_caching: Literal["off", "auto"] = "off"
    cache: AliasCache | None = None  # the response cache for this alias (policies/cache.py); None: global
    offline_fallback: str | None = None  # a local provider's name, or "off"; None: the global setting
    privacy: PrivacyPolicy = "standard"  # the loosest policy its requests may have (policies/privacy.py)
    vision_bridge: VisionBridgeConfig | None = None  # overrides the global `vision_bridge` for this alias


class ClientKey(Base):
    key: Secret
    name: str | None = None
    rpm: int | None = None
    max_concurrency: int | None = None
    cache: CacheRequests | Literal["off"] | None = None  # this key's response-cache opt-in; None: the alias's
    privacy: PrivacyPolicy | None = None  # the loosest policy its requests may have

    def __post_init__(self) -> None:
        self.key = Secret(self.key)

    @property
    def ledger_id(self) -> str:
        """How the ledger, logs and the cache name this key: by its name, else a hash prefix (never the key)."""
        return "config:" + (self.name or hashlib.sha256(self.key.reveal().encode()).hexdigest()[:12])


class RetryConfig(Base):
    attempts: int = 6  # total upstream attempts per client request
    deadline: float = 120.0  # seconds across all attempts, before the first byte


class ServerConfig(Base):
    """Limits and access rules of the client-facing server (SECURITY.md lists each with its reason)."""

    max_body_bytes: int = 32 * 1024 * 1024
    allow_private_image_urls: bool = False  # the image fetcher refuses loopback/private/metadata addresses
    max_media_urls: int = 16  # remote image/video URLs the gateway fetches for one request
    max_media_bytes: int = 64 * 1024 * 1024  # bytes fetched for one request, all URLs together
    max_header_bytes: int = 64 * 1024  # request line + headers
    max_headers: int = 100
    max_url_bytes: int = 8 * 1024
    header_timeout: float = 10.0  # seconds for a client to send its request line and headers
    body_timeout: float = (
        60.0  # seconds for a client to send its whole body (and to resume reading our answer)
    )
    keepalive_timeout: float = 5.0  # idle keep-alive connections close after this
    max_connections: int = 4096  # open client connections; past it new ones get a 503 and are closed
    admin_key: Secret | None = None  # for /admin/*; else $SMOLGATE_ADMIN_KEY; else admin is loopback-only
    allowed_hosts: list[str] | None = (
        None  # Host header allow-list; None: loopback names when keyless, else any
    )
    cors_origins: list[str] = msgspec.field(default_factory=list)  # browser origins allowed ("*" for any)
    auth_failures: int = 10  # failed authentications per client address (IPv6: /64) in 5 min before it waits
    auth_backoff: float = 30.0  # the longest wait (seconds) after repeated failures

    def __post_init__(self) -> None:
        self.admin_key = as_secret(self.admin_key)


class PriceOverride(Base):
    """USD per million tokens for one upstream model (overrides the maintained price table)."""

    input: float
    output: float
    cached_input: float | None = None  # cache reads; None: the input price
    cache_write: float | None = None  # cache writes; None: the input price


class LedgerConfig(Base):
    enabled: bool = True  # one usage row per request in the store
    flush_interval: float = 1.0  # seconds between batched writes (and the most a kill -9 can lose)
    max_buffer: int = 100_000  # rows held for the next flush; past it new rows are dropped and counted
    retention_days: float = 90.0  # raw rows; 0 keeps them forever
    rollup_retention_days: float = 730.0  # per-minute/hour aggregates (dashboards, budgets)
    prices: dict[str, PriceOverride] = msgspec.field(default_factory=dict)  # model -> price


class TracesConfig(Base):
    endpoint: str | None = None  # OTLP/HTTP traces endpoint (http://host:4318/v1/traces); None: tracing off
    service_name: str = "smolgate"
    headers: dict[str, Secret] = msgspec.field(default_factory=dict)  # e.g. an auth header for the collector


class ObservabilityConfig(Base):
    metrics: bool = True  # Prometheus exposition at /metrics
    metrics_public: bool = False  # /metrics without the admin key (for a scraper on a private network)
    access_log: bool = True  # one info line per request (status, latency, alias, account name, key id)
    traces: TracesConfig = msgspec.field(default_factory=TracesConfig)


class PrivacyConfig(Base):
    """What `redact` looks for (policies/detectors.py): built-in kinds (None: all) and named regexes."""

    detectors: list[str] | None = None
    patterns: dict[str, str] = msgspec.field(default_factory=dict)  # NAME → regex; placeholder ⟦NAME_1⟧


class ConsoleConfig(Base):
    """The web console at /ui (docs/console.md)."""

    enabled: bool = True  # /ui and its sessions; off: those paths answer 404 (the admin API stays)
    session_ttl: float = 12 * 3600.0  # seconds a console sign-in lasts
    recent_requests: int = 500  # requests kept in memory for /admin/requests (this replica's)
    log_bodies: bool = False  # keep request/response bodies with them (each cut to 64 KiB)


class Config(Base):
    providers: list[AnyProvider] = msgspec.field(default_factory=list)
    models: list[ModelAlias] = msgspec.field(default_factory=list)
    keys: list[ClientKey] = msgspec.field(default_factory=list)
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    state: Secret | None = None  # redis://… to share pool state across replicas (may hold a password)
    store: Secret | None = None  # sqlite:///path or postgresql://…; None: smolgate.db in the data dir
    data_dir: str | None = None  # None: $SMOLGATE_HOME, else ~/.local/share/smolgate
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    observability: ObservabilityConfig = msgspec.field(default_factory=ObservabilityConfig)
    privacy: PrivacyConfig = msgspec.field(default_factory=PrivacyConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    shutdown_grace: float = 30.0  # seconds in-flight requests get to finish on SIGTERM / Ctrl-C
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    offline_fallback: str = "auto"  # a local provider's name, "off", or auto: the first local provider
    vision_bridge: VisionBridgeConfig = msgspec.field(default_factory=VisionBridgeConfig)

    def __post_init__(self) -> None:
        self.state = as_secret(self.state)
        self.store = as_secret(self.store)

    @property
    def data_path(self) -> Path:
        """Where the default SQLite store and the master key file live."""
        home = self.data_dir or os.environ.get("SMOLGATE_HOME")
        return Path(home) if home else Path.home() / ".local" / "share" / "smolgate"

    @property
    def state_display(self) -> str:
        """The state store's URL with any password masked, for logs and `smolgate check`."""
        return redact_url(self.state.reveal()) if self.state else "in-process"

    def secret_values(self) -> list[str]:
        """Every credential value in this config (for `Redactor`)."""
        remote = [p for p in self.providers if isinstance(p, ProviderConfig)]
        out = [a.api_key.reveal() for p in self.providers for a in p.accounts if a.api_key]
        out += [v.reveal() for p in remote for v in p.headers.values()]
        out += [v for p in remote for v in _url_secrets(p.base_url)]  # user:password@, ?key=
        out += [k.key.reveal() for k in self.keys]
        if self.server.admin_key:
            out.append(self.server.admin_key.reveal())
        if self.store:
            out += _url_secrets(self.store.reveal())[:1]
        out += [v.reveal() for v in self.observability.traces.headers.values()]
        if self.state:  # its password (its query holds options such as ssl_cert_reqs=required)
            out += _url_secrets(self.state.reveal())[:1]
        return [v for v in out if v]

    def provider(self, name: str) -> AnyProvider | None:
        return next((p for p in self.providers if p.name == name), None)


def _url_secrets(url: str) -> list[str]:
    """A URL's password and query values (any may be a credential; harmless ones cost nothing to mask)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [parts.password or "", *(v for _, v in parse_qsl(parts.query))]


class ConfigError(ValueError):
    pass


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NONCE = os.urandom(6).hex()
_TOKEN = re.compile(r"SMOLGATEENV\d+X[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class _EnvRef:
    """One `${NAME}` / `${NAME:-default}` in the text, and the line it was written on."""

    name: str
    default: str | None
    line: int


def _placeholders(text: str) -> tuple[str, dict[str, _EnvRef]]:
    """Swap each `${VAR}` for an inert token before parsing; returns the text and token → reference.

    Nothing is looked up yet: only tokens that end up in a parsed scalar are resolved (`_substitute`), so a
    `${VAR}` in a YAML comment is dropped with the comment instead of failing for an unset variable. The values
    go in after parsing, as plain text: an environment value is never parsed as YAML, so a key containing ` #`,
    `: ` or quotes stays whole, and unquoted `${VAR}` still works in flow mappings. Numbers and booleans written
    as `${VAR}` are converted by the (lax) struct conversion.
    """
    refs: dict[str, _EnvRef] = {}

    def repl(m: re.Match[str]) -> str:
        token = f"SMOLGATEENV{len(refs)}X{_NONCE}"
        refs[token] = _EnvRef(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        return token

    return _ENV.sub(repl, text), refs


def _substitute(node: yaml.Node | None, refs: dict[str, _EnvRef], source: str) -> list[str]:
    """Put the environment values into the string scalars of the parsed tree, in place; returns the values."""
    used: list[str] = []

    def value(m: re.Match[str]) -> str:
        ref = refs.get(m.group(0))
        if ref is None:  # the token's look-alike in the user's own text
            return m.group(0)
        found = os.environ.get(ref.name, ref.default)
        if found is None:
            raise ConfigError(
                f"{source}:{ref.line}: environment variable {ref.name} is not set "
                f"(use ${{{ref.name}:-default}} for a default)"
            )
        used.append(found)
        return found

    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.ScalarNode):
            if "SMOLGATEENV" in n.value:
                n.value = _TOKEN.sub(value, n.value)
                n.tag = "tag:yaml.org,2002:str"
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
        elif isinstance(n, yaml.MappingNode):
            for key, item in n.value:
                stack += [key, item]  # keys too: `headers: {${NAME}: …}`
    return used


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and position, without the snippet of the line (it may hold a key)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _dec_hook(typ: type, obj: object) -> Secret:
    if typ is Secret and isinstance(obj, (str, int)) and not isinstance(obj, bool):
        return Secret(str(obj))
    raise ValueError("Expected a string")  # a ValidationError naming the field; never the value itself


# Fields whose values are credentials (any scalar below them), for scrubbing error messages about a config
# that did not validate (so no `Secret` exists yet): a misplaced key can end up quoted as an enum value.
_SECRET_FIELDS = {"api_key", "key", "admin_key", "state", "headers"}


def _secret_scalars(node: yaml.Node | None, inside: bool = False) -> list[str]:
    out: list[str] = []
    stack = [(node, inside)]
    while stack:
        n, secret = stack.pop()
        if isinstance(n, yaml.ScalarNode):
            if secret:
                out.append(n.value)
        elif isinstance(n, yaml.SequenceNode):
            stack += [(item, secret) for item in n.value]
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if secret:
                    stack.append((k, True))  # a key pasted as a mapping key is still a key
                stack.append((v, secret or (isinstance(k, yaml.ScalarNode) and k.value in _SECRET_FIELDS)))
    return out


def _tag_providers(data: object) -> None:
    """Set each provider's union tag from its `protocol` (local → the engine's struct, else the HTTP one)."""
    providers = data.get("providers") if isinstance(data, dict) else None
    for p in providers if isinstance(providers, list) else []:
        if isinstance(p, dict):
            p["kind"] = "local" if p.get("protocol") == "local" else "remote"


def _parse(text: str, source: str) -> Config:
    """Parse and validate. A ConfigError's message never holds a credential: YAML errors give the position
    without the line's text, and anything else is scrubbed of environment values and of every value written
    under a credential field."""
    text, refs = _placeholders(text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:  # no environment value is in the text yet: nothing to scrub
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    values = _substitute(node, refs, source)
    scrub = Redactor([*values, *_secret_scalars(node)])
    try:
        data: object = yaml.SafeLoader("").construct_document(node) if node is not None else {}
        data = data or {}
        _tag_providers(data)
        cfg = msgspec.convert(data, Config, strict=False, dec_hook=_dec_hook)
    except yaml.YAMLError as exc:
        raise ConfigError(scrub(f"{source}: not valid YAML: {_yaml_problem(exc)}")) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(scrub(explain(str(exc), node, data, source, Config))) from None
    try:
        _check_references(cfg)
    except ConfigError as exc:
        raise ConfigError(scrub(str(exc))) from None
    return cfg


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
    local = {p.name for p in cfg.providers if isinstance(p, LocalProviderConfig)}
    offline = [("offline_fallback", cfg.offline_fallback)]
    offline += [
        (f"models[{i}].offline_fallback", m.offline_fallback or "auto") for i, m in enumerate(cfg.models)
    ]
    for where, name in offline:
        if name not in ("auto", "off", *local):
            raise ConfigError(
                f"{where}: '{name}' is not a local provider (names: {sorted(local)}), auto or off"
            )
    try:
        Detectors.build(cfg.privacy.detectors, cfg.privacy.patterns)
    except ValueError as exc:
        raise ConfigError(f"privacy: {exc}") from None
    bridges = [("vision_bridge", cfg.vision_bridge)]
    bridges += [
        (f"models[{i}].vision_bridge", m.vision_bridge) for i, m in enumerate(cfg.models) if m.vision_bridge
    ]
    for where, vb in bridges:
        if vb.model and not isinstance(cfg.provider(vb.model.split("/")[0]), LocalProviderConfig):
            raise ConfigError(f"{where}.model: no local provider named '{vb.model.split('/')[0]}'")
    for i, p in enumerate(cfg.providers):
        if isinstance(p, ProviderConfig) and not p.base_url:
            raise ConfigError(f"providers[{i}].base_url: required for protocol '{p.protocol}'")
        for j, a in enumerate(p.accounts):
            if a.name is None:
                a.name = f"{p.name}#{j}"


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate a config; errors name the file, line and field (config_errors.py)."""
    return _parse(text, source)


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from None
    return parse_config(text, str(p))
