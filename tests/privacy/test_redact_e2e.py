"""`privacy: redact` end to end: every client protocol (official SDK) × every upstream protocol, streaming and
not. The fake upstreams record every request; no detected value may appear in any of them, and the client must
get every value back where the model wrote its placeholder (the fakes echo what they saw)."""

from __future__ import annotations

import json
import re

import pytest

from tests.gateway.clients import CLIENTS, Ask, ToolExchange
from tests.privacy.conftest import PROTOCOLS

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
IP = "203.0.113.42"
KEY = "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
VALUES = [EMAIL, PHONE, CARD, IBAN, IP, KEY, JWT]

MATRIX = [(c, u, s) for c in CLIENTS for u in PROTOCOLS for s in (False, True)]
IDS = [f"{c.name}->{u}-{'stream' if s else 'plain'}" for c, u, s in MATRIX]


@pytest.fixture(scope="module")
def clients(privacy_gateway):
    return {c: c(privacy_gateway.url) for c in CLIENTS}


def _sent(fakes) -> str:
    """Everything the upstreams received since the last reset, as one text."""
    seen = {id(f): f for f in fakes.values()}.values()
    return "\n".join(json.dumps(r.json, ensure_ascii=False) for f in seen for r in f.requests)


def _assert_nothing_leaked(sent: str) -> None:
    assert sent, "the upstream received nothing"
    for value in VALUES:
        assert value not in sent
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 8:
            assert digits not in re.sub(r"\D", "", sent.replace(value, "")) or value == IP


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_values_never_reach_the_upstream_and_come_back(fakes, clients, client_cls, upstream, stream):
    for f in fakes.values():
        f.reset()
    question = f"mail {EMAIL} or call {PHONE}; card {CARD}; iban {IBAN}; host {IP}; key {KEY}; jwt {JWT}"
    if stream:
        question += " CHAR_CHUNKS"  # the answer streams 3 characters at a time: placeholders arrive split
    ask = Ask(
        system=f"The account owner is {EMAIL}.",
        turns=[("user", f"I am {EMAIL}"), ("assistant", f"Hello {EMAIL}, noted {PHONE}"), ("user", question)],
        stream=stream,
    )
    r = clients[client_cls].ask(f"redact-{upstream}", ask)
    assert r.text == f"You said: {question} | system=The account owner is {EMAIL}. images=0 turns=3"
    sent = _sent(fakes)
    _assert_nothing_leaked(sent)
    # one value, one placeholder, everywhere in the request (system, history, the question)
    assert sent.count("⟦EMAIL_1⟧") >= 3 and "⟦EMAIL_2⟧" not in sent
    for placeholder in ("⟦PHONE_1⟧", "⟦CARD_1⟧", "⟦IBAN_1⟧", "⟦IP_1⟧", "⟦SECRET_1⟧", "⟦SECRET_2⟧"):
        assert placeholder in sent


@pytest.mark.parametrize("client_cls,upstream,stream", MATRIX, ids=IDS)
def test_tool_arguments_and_results_are_redacted(fakes, clients, client_cls, upstream, stream):
    for f in fakes.values():
        f.reset()
    x = ToolExchange(
        call_id="call_1", name="get_weather", args={"city": f"ring {PHONE}"}, result=f"paid from {IBAN}"
    )
    ask = Ask(turns=[("user", f"weather for {EMAIL}")], tools=True, exchange=x, stream=stream)
    r = clients[client_cls].ask(f"redact-{upstream}", ask)
    assert r.text == f"The tool said: paid from {IBAN}"
    sent = _sent(fakes)
    _assert_nothing_leaked(sent)
    assert "⟦PHONE_1⟧" in sent and "⟦IBAN_1⟧" in sent
