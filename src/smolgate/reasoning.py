"""Reasoning settings: the one table that maps effort levels and budgets between protocols, and the policy
that decides which reasoning fields a target gets.

Levels (canonical `ReasoningConfig.effort`): none < minimal < low < medium < high < xhigh < max.

| effort  | budget tokens (Anthropic ≥1024, Gemini thinkingBudget) | OpenAI reasoning_effort | Ollama think |
|---------|--------------------------------------------------------|-------------------------|--------------|
| none    | thinking disabled / thinkingBudget 0                   | "none" if asked so      | false        |
| (on, no level) | Anthropic 2048, Gemini -1 (dynamic)             | medium                  | true         |
| minimal | 128 (Anthropic 1024)                                   | minimal                 | "low"        |
| low     | 1024                                                   | low                     | "low"        |
| medium  | 2048                                                   | medium                  | "medium"     |
| high    | 4096                                                   | high                    | "high"       |
| xhigh   | 8192                                                   | xhigh                   | "high"       |
| max     | 16384                                                  | high (no wider word)    | "high"       |

A Gemini client's thinkingLevel (MINIMAL/LOW/MEDIUM/HIGH) reads as the same-named effort and goes back to a
Gemini upstream as given; other upstreams get the table above. A budget maps back to the smallest level whose
budget covers it (0 → none, 1-128 → minimal, ≤1024 → low, …, above 8192 → max), so effort → budget → effort
is the identity.

Policy: never send a reasoning field the client did not really ask for. A *hint* (an effort without
`thinking`, `includeThoughts` alone, a reasoning summary alone) reaches an upstream only when the target is
declared `reasoning: true`. A target declared `reasoning: false` gets no reasoning fields at all. With
`auto` (the default) a real request is sent; when the upstream refuses it (a 400 naming the reasoning
parameter or thinking) the model is remembered as non-reasoning (bounded, per provider+model, for an hour)
and the call is retried once without the reasoning fields.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from .canonical import ReasoningConfig, Request
from .errors import GatewayError

log = logging.getLogger("smolgate.reasoning")

LEVELS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
EFFORT_BUDGET = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
ANTHROPIC_MIN_BUDGET = 1024
OPENAI_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
OLLAMA_THINK = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


# ---------------------------------------------------------------- the level table


def effort_from_budget(budget: int) -> str:
    """The smallest level whose budget covers `budget` (0 or less: none)."""
    if budget <= 0:
        return "none"
    for level in LEVELS[1:]:
        if budget <= EFFORT_BUDGET[level]:
            return level
    return "max"


def level(cfg: ReasoningConfig) -> str | None:
    """The effort level a config asks for: its effort, else its budget's level, else None (model default)."""
    if not cfg.enabled:
        return "none"
    if cfg.effort in LEVELS:
        return cfg.effort
    if cfg.budget_tokens is not None:
        return effort_from_budget(cfg.budget_tokens)
    return None


def budget(cfg: ReasoningConfig, floor: int = 0) -> int | None:
    """A token budget for budget-based protocols: the client's budget, else its level's; None = dynamic."""
    if cfg.budget_tokens is not None and cfg.budget_tokens > 0:
        return max(floor, cfg.budget_tokens)
    lv = level(cfg)
    if lv is None or lv == "none":
        return None
    return max(floor, EFFORT_BUDGET[lv])


def openai_effort(cfg: ReasoningConfig | None) -> str | None:
    """`reasoning_effort` for OpenAI Chat / Responses `reasoning.effort`; None: send nothing."""
    if cfg is None:
        return None
    if not cfg.enabled:
        # only an explicit OpenAI-style "none" is sent; older models reject it, so a plain "off" sends nothing
        return "none" if cfg.effort == "none" else None
    if cfg.effort in OPENAI_EFFORTS:
        return cfg.effort
    if cfg.effort == "max":
        return "high"
    if cfg.budget_tokens is not None:
        lv = effort_from_budget(cfg.budget_tokens)
        return "high" if lv in ("xhigh", "max") else lv
    # Thinking asked for without a level (Ollama `think: true`, Anthropic adaptive, a Gemini dynamic budget):
    # OpenAI's documented default effort, as Anthropic gets the medium budget. Omitting it would leave newer
    # models (gpt-5.1 and later default to "none") not reasoning at all. A hint alone is no request.
    return None if cfg.hint else "medium"


def gemini_thinking(cfg: ReasoningConfig | None, raw_level: str | None = None) -> dict[str, object] | None:
    """`generationConfig.thinkingConfig`. `raw_level` is a Gemini client's own thinkingLevel (sent as given)."""
    if cfg is None:
        return None
    if not cfg.enabled:
        return {"thinkingBudget": 0}
    out: dict[str, object] = {}
    if raw_level:
        out["thinkingLevel"] = raw_level
    elif cfg.budget_tokens is not None or cfg.effort in EFFORT_BUDGET:
        out["thinkingBudget"] = budget(cfg)
    elif not cfg.hint:
        out["thinkingBudget"] = -1  # dynamic: the model decides
    if cfg.include_thoughts is not None:
        out["includeThoughts"] = cfg.include_thoughts
    elif not cfg.hint:
        out["includeThoughts"] = True
    return out or None


def gemini_effort(thinking_level: str) -> str | None:
    lv = thinking_level.lower()
    return lv if lv in LEVELS else None


def ollama_think(cfg: ReasoningConfig | None) -> bool | str | None:
    """Ollama `think`: false, true, or a level string (gpt-oss needs the string; others read it as true)."""
    if cfg is None:
        return None
    lv = level(cfg)
    if lv == "none":
        return False
    return OLLAMA_THINK.get(lv or "", True)


# ---------------------------------------------------------------- the policy


def carries_reasoning(req: Request) -> bool:
    ax = req.extras.anthropic  # the Anthropic decoder keeps the client's own thinking settings here
    return req.reasoning is not None or ax.thinking is not None or ax.effort is not None


def strip(req: Request) -> Request:
    """The request without any reasoning setting (canonical or Anthropic pass-through), including Anthropic
    `context_management` edits that only work with thinking on (`clear_thinking_*`)."""
    if not carries_reasoning(req):
        return req
    passthrough = req.extras.anthropic.passthrough
    cm = passthrough.get("context_management")
    if isinstance(cm, dict) and isinstance(cm.get("edits"), list):
        edits = [
            e
            for e in cm["edits"]
            if not (isinstance(e, dict) and str(e.get("type")).startswith("clear_thinking"))
        ]
        rest = {k: v for k, v in passthrough.items() if k != "context_management"}
        passthrough = {**rest, "context_management": {**cm, "edits": edits}} if edits else rest
    ax = msgspec.structs.replace(req.extras.anthropic, thinking=None, effort=None, passthrough=passthrough)
    extras = msgspec.structs.replace(req.extras, anthropic=ax)
    return msgspec.structs.replace(req, reasoning=None, extras=extras)


def for_target(req: Request, reasons: bool | None) -> Request:
    """`reasons`: True (declared), False (declared or learned), None (unknown)."""
    if reasons is False:
        return strip(req)
    r = req.reasoning
    if r is not None and r.hint and reasons is not True:
        return msgspec.structs.replace(req, reasoning=None)
    return req


_TERMS = re.compile(r"reason|think|effort|budget", re.IGNORECASE)
_REFUSAL = re.compile(
    r"not supported|unsupported|does not support|doesn't support|not available|unknown|"
    r"unrecognized|extra inputs|not permitted|not allowed|invalid",
    re.IGNORECASE,
)


def refused(exc: GatewayError, req: Request) -> bool:
    """An upstream 400 that refuses the request's reasoning settings (not some other client mistake)."""
    if exc.upstream_status not in (400, 422) or not carries_reasoning(req):
        return False
    text = f"{exc.message} {exc.param or ''}"
    return bool(_TERMS.search(text) and _REFUSAL.search(exc.message))


T = TypeVar("T")


class ReasoningPolicy:
    """Declared capabilities from config plus what upstream refusals taught (bounded, expiring).

    `declared` maps (alias, provider, model) → bool, from each alias's targets: a request's own alias decides;
    a target reached through another alias (a fallback) uses the first declaration for that provider+model.
    """

    def __init__(
        self, declared: dict[tuple[str, str, str], bool], max_entries: int = 4096, ttl: float = 3600.0
    ) -> None:
        self._declared = declared
        self._any: dict[tuple[str, str], bool] = {}
        for (_, provider, model), value in declared.items():
            self._any.setdefault((provider, model), value)
        self._learned: OrderedDict[tuple[str, str], float] = OrderedDict()  # key → time learned
        self._max = max_entries
        self._ttl = ttl

    def reasons(self, provider: str, model: str, alias: str = "") -> bool | None:
        key = (provider, model)
        declared = self._declared.get((alias, provider, model), self._any.get(key))
        if declared is not None:
            return declared
        at = self._learned.get(key)
        if at is None:
            return None
        if time.monotonic() - at > self._ttl:
            del self._learned[key]
            return None
        return False

    def learn(self, provider: str, model: str) -> None:
        key = (provider, model)
        self._learned[key] = time.monotonic()
        self._learned.move_to_end(key)
        while len(self._learned) > self._max:
            self._learned.popitem(last=False)

    def shape(self, req: Request, provider: str, model: str) -> Request:
        return for_target(req, self.reasons(provider, model, req.model))

    async def call(
        self, send: Callable[[Request], Awaitable[T]], req: Request, provider: str, model: str
    ) -> T:
        """`send(shaped request)`; once more without reasoning if the upstream refuses it (and remember)."""
        shaped = self.shape(req, provider, model)
        try:
            return await send(shaped)
        except GatewayError as exc:
            if self.reasons(provider, model, req.model) is not None or not refused(exc, shaped):
                raise
            self.learn(provider, model)
            log.info(
                "upstream refused reasoning settings; retrying without them and remembering: "
                "provider=%s model=%s status=%s reason=%s",
                provider,
                model,
                exc.upstream_status,
                exc.message[:200],
            )
        return await send(strip(shaped))
