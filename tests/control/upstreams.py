"""A fake OpenAI upstream that accepts a set of keys (changeable while it runs), so tests can see which
account's key each request carried."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.openai_upstream import OpenAIUpstream


class KeysUpstream(OpenAIUpstream):
    def __init__(self, keys: set[str], echo: bool = False) -> None:
        super().__init__(api_key="")
        self.keys = keys
        self.echo = echo  # quote a rejected key whole in the error, as some upstreams do

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[7:] in self.keys:
            return None
        if self.echo:
            err = {"message": f"Incorrect API key provided: {header[7:]}", "code": "invalid_api_key"}
            return web.json_response({"error": {**err, "type": "invalid_request_error"}}, status=401)
        return super()._auth(request)

    def keys_seen(self) -> list[str]:
        return [
            r.headers.get("authorization", "")[7:] for r in self.requests if r.path.endswith("/completions")
        ]
