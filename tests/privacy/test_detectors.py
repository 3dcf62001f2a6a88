"""The detectors one kind at a time: what each must find (true positives, real-world formats) and what it must
leave alone (numbers, dates, versions, hashes, identifiers: a false positive changes what the model reads)."""

from __future__ import annotations

import pytest

from smolgate.config import ConfigError, parse_config
from smolgate.policies.detectors import Detectors, entropy, iban_ok, luhn

D = Detectors()


def kinds(text: str, d: Detectors = D) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in d.find(text)]


FOUND = [
    ("email", "john.doe+tag@example.co.uk"),
    ("email", "a_b-c@sub.domain.io"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "+1-202-555-0143"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "+4915123456789"),
    ("phone", "(415) 555-2671"),
    ("phone", "415-555-2671"),
    ("phone", "030 1234 5678"),
    ("phone", "06 12 34 56 78"),
    ("card", "4111 1111 1111 1111"),
    ("card", "4242-4242-4242-4242"),
    ("card", "5500005555555559"),
    ("card", "378282246310005"),  # Amex, 15 digits
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "FR1420041010050500013M02606"),
    ("ip", "192.168.1.20"),
    ("ip", "8.8.8.8"),
    ("ip", "2001:db8::1"),
    ("ip", "fe80::1ff:fe23:4567:890a"),
    ("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip", "::ffff:c000:280"),
    ("secret", "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4"),
    ("secret", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
    ("secret", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    ("secret", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("secret", "github_pat_11ABCDEFG0123456789_abcdefghij"),
    ("secret", "xoxb-1234567890-abcdefghijkl"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("secret", "hf_abcdefghijklmnopqrstuvwxyzABCDEF"),
    (
        "secret",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    (
        "secret",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ),
    ("token", "Zx8Kq2LmN9pR4tV7wY1bC3dF6gH0jS5a"),
    ("token", "KpBR4+F1v/ko5DRsqmBwFUFHkvsg/AJn/9ff6GfA"),  # an AWS secret access key's shape (base64)
]


@pytest.mark.parametrize("kind,value", FOUND, ids=[f"{k}:{v[:24]}" for k, v in FOUND])
def test_found_alone_and_in_a_sentence(kind, value):
    assert kinds(value) == [(kind, value)]
    text = f"Please use {value}, thanks."
    assert kinds(text) == [(kind, value)]
    assert kinds(f"({value})") == [(kind, value)]


LEFT_ALONE = [
    "the meeting is on 2024-01-15 at 10:30:45, or 15/01/2024",
    "pip install torch==2.13.0 and python 3.11.4, release v1.2.3.4",
    "order 1234567890 and 12345 items; pi is 3.14159265358979",
    "4111 1111 1111 1112 fails Luhn",
    "GB82WEST12345698765433 fails its checksum",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b and uuid 123e4567-e89b-12d3-a456-426614174000",
    "this_is_a_very_long_function_name_for_tests and SomeVeryLongCamelCaseClassName2Here",
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct and Qwen/Qwen3-VL-235B-A22B-Instruct-FP8",
    "serve on 0.0.0.0 or 127.0.0.1 or ::1",
    "std::vector<int> a; ns::x::y; a::b",
    "see https://example/path/to/some_long_file_name_here.py and /usr/local/lib/python3.11/site-packages",
    "000.000.000.0000 and 999.1.1.1 and 1.2.3",
    "user@localhost has no domain; @mention and a@b",
    "call me at 555-2671; room 0 12",
    "on 05/06/2024 10 people came, 2024-06-05 12 more, 06.05.2024 15",
    "sk-short and AKIA1234",
]


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_left_alone(text):
    assert kinds(text) == []


def test_checksums():
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")
    assert entropy("aaaa") == 0.0 and entropy("abcd") == 2.0


def test_several_in_one_text_in_order():
    text = "mail a.b@example.com from 10.0.0.1 re card 4111111111111111"
    assert kinds(text) == [("email", "a.b@example.com"), ("ip", "10.0.0.1"), ("card", "4111111111111111")]
    close = "a@example.com, a@example.com;b@example.org c@example.net"
    assert [v for _, v in kinds(close)] == [
        "a@example.com",
        "a@example.com",
        "b@example.org",
        "c@example.net",
    ]


def test_operator_patterns_and_a_subset_of_kinds():
    d = Detectors.build(["email"], {"EMPLOYEE": r"EMP-\d{6}"})
    assert kinds("EMP-123456 wrote to x@example.com from 10.0.0.1", d) == [
        ("employee", "EMP-123456"),
        ("email", "x@example.com"),
    ]


@pytest.mark.parametrize(
    "privacy,message",
    [
        ("{detectors: [email, names]}", "unknown detector 'names'"),
        ("{patterns: {EMAIL: 'x'}}", "not a built-in kind's name"),
        ("{patterns: {Policy: 'x'}}", "not a built-in kind's name"),
        ("{patterns: {bad-name: 'x'}}", "1-24 letters and digits"),
        ("{patterns: {CASE: '(unclosed'}}", "pattern 'CASE'"),
    ],
)
def test_bad_config_is_refused_at_load(privacy, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(f"privacy: {privacy}\n")


def test_policy_fields_in_config():
    cfg = parse_config(
        "privacy: {detectors: [email, phone], patterns: {CASE: 'CASE-\\d+'}}\n"
        "keys: [{key: k-123456789, privacy: local}]\n"
        "providers: [{name: p, protocol: openai, base_url: 'http://127.0.0.1:1/v1'}]\n"
        "models: [{name: m, privacy: redact, targets: [{provider: p, model: x}]}]\n"
    )
    assert cfg.models[0].privacy == "redact" and cfg.keys[0].privacy == "local"
    with pytest.raises(ConfigError):
        parse_config("models: [{name: m, privacy: secret, targets: []}]\n")
