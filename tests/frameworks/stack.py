"""One gateway in front of the five fake upstreams, for the framework tests (and `python -m tests.frameworks.stack`
to keep one running while trying a framework by hand).

Each upstream protocol gets an alias named after it (`openai`, `openai-responses`, `anthropic`, `gemini`,
`ollama`) whose target model reasons and, for Gemini, signs its calls like Gemini 3; `o3-<protocol>` is the
same route under a name that frameworks which decide by model name take for a reasoning model; `bad-<protocol>`
routes to the same upstream with a key the upstream rejects. Clients authenticate with CLIENT_KEY.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.gemini_upstream import GeminiUpstream
from tests.fakes.ollama_upstream import OllamaUpstream
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.gateway_server import GatewayServer

UPSTREAMS = ("openai", "openai-responses", "anthropic", "gemini", "ollama")
CLIENT_KEY = "sk-smolgate-frameworks"
KEYS = {"openai": "k-openai", "anthropic": "k-anthropic", "gemini": "k-gemini", "ollama": "k-ollama"}
# models that reason (and, for Gemini, need their thought signatures back like Gemini 3)
MODELS = {
    "openai": "gpt-reason-fake",
    "openai-responses": "gpt-reason-fake",
    "anthropic": "claude-fake",
    "gemini": "gemini-3-fake",
    "ollama": "qwen-think-fake",
}


@dataclass
class Stack:
    fakes: dict[str, object]
    gateway: GatewayServer

    @property
    def url(self) -> str:
        return self.gateway.url


def config(urls: dict[str, str]) -> str:
    base = {
        "openai": urls["openai"] + "/v1",
        "openai-responses": urls["openai"] + "/v1",
        "anthropic": urls["anthropic"],
        "gemini": urls["gemini"],
        "ollama": urls["ollama"],
    }
    key = {**KEYS, "openai-responses": KEYS["openai"]}
    out = "providers:\n"
    for p in UPSTREAMS:
        for prefix, k in (("", key[p]), ("bad-", "k-rejected")):
            out += (
                f"  - {{name: {prefix}up-{p}, protocol: {p}, base_url: '{base[p]}', "
                f"accounts: [{{api_key: {k}}}], timeouts: {{first_byte: 10, idle: 10}}}}\n"
            )
    out += "models:\n"
    for p in UPSTREAMS:  # o3-<p>: a name frameworks that decide by model name treat as a reasoning model
        for name, prefix in ((p, ""), (f"o3-{p}", ""), (f"bad-{p}", "bad-")):
            out += f"  - {{name: {name}, targets: [{{provider: {prefix}up-{p}, model: {MODELS[p]}}}]}}\n"
    return out + f"keys: [{{key: {CLIENT_KEY}}}]\nretry: {{attempts: 2, deadline: 20}}\n"


def start() -> Stack:
    fakes: dict[str, object] = {
        "openai": OpenAIUpstream(api_key=KEYS["openai"]),
        "anthropic": AnthropicUpstream(api_key=KEYS["anthropic"]),
        "gemini": GeminiUpstream(api_key=KEYS["gemini"]),
        "ollama": OllamaUpstream(api_key=KEYS["ollama"]),
    }
    for f in fakes.values():
        f.start()  # type: ignore[attr-defined]
    fakes["openai-responses"] = fakes["openai"]
    gw = GatewayServer(config({k: f.url for k, f in fakes.items()})).start()  # type: ignore[attr-defined]
    return Stack(fakes, gw)


def stop(stack: Stack) -> None:
    stack.gateway.stop()
    for name, f in stack.fakes.items():
        if name != "openai-responses":
            f.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    import time

    s = start()
    print(s.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop(s)
