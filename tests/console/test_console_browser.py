"""The console in a real browser (issue #18): headless chromium driven by Playwright against `smolgate serve` with
a real store and fake upstreams. The tests run in order on one signed-in page, like an operator's session:
sign in, create a key and use it from the OpenAI SDK, find the request and its cost in Usage and Requests, watch
an account cool down after a 429 and recover, revoke the key, use the playground (local VLM with an image; the
wire view of a request converted to Anthropic), and check that CSRF-less and session-less calls are refused."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from tests.console.conftest import open_page, shot, sign_in
from tests.console.stack import ADMIN_KEY, ANTHROPIC_KEY, EXTRA_KEY, OPENAI_KEY, PRICE_IN, PRICE_OUT, Stack

WAIT_MS = 30_000  # the most any one condition may take to show (generous: 2 shared cores)
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
state: dict[str, Any] = {}  # what one test leaves for the next (the key's secret, a request id)


def usd(n: float) -> str:
    """As the console formats dollars (dom.js fmtUsd) for amounts from one cent to $100."""
    return f"${n:.4f}"


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def request_row(page: Page, rid: str) -> Locator:
    """The Requests page's row for `rid`, refreshing until it is there (a request is recorded as it finishes)."""
    open_page(page, "requests")
    row = page.locator(f'sg-requests tr[data-request-id="{rid}"]')
    for _ in range(100):
        if row.count():
            break
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(100)
    return row


def test_signin_is_required_and_checks_the_key(page: Page, stack: Stack) -> None:
    page.goto("/ui/#/keys")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # no page without a session
    shot(page, "signin")
    page.get_by_label("Admin key").fill("not-the-admin-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("sg-signin .status.error")).not_to_be_empty()
    expect(page.locator("#nav")).to_be_hidden()
    sign_in(page)
    expect(page.locator("#nav")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "smolgate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_KEY not in cookie["value"]


def test_create_a_key_and_use_it_from_the_openai_sdk(page: Page, stack: Stack) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_page(page, "keys")
    page.get_by_label("Name", exact=True).fill("team-a")
    page.get_by_label("Models").select_option(["gpt"])
    page.get_by_label("Requests per minute").fill("100")
    page.get_by_label("Budget (USD)").fill("5")
    page.get_by_label("Budget period").select_option("month")
    page.get_by_role("button", name="Create key").click()
    dialog = page.locator("dialog.secret-dialog")
    expect(dialog).to_be_visible()
    secret = dialog.locator("input.secret").input_value()
    assert secret.startswith("sg-")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "keys-secret")
    dialog.get_by_role("button", name=re.compile("Done")).click()
    expect(dialog).to_have_count(0)
    assert secret not in page.content()  # shown once: gone from the page when the dialog closes
    row = page.locator('tr[data-key-name="team-a"]')
    expect(row).to_contain_text("gpt")
    expect(row).to_contain_text("$5.0000 (month)")

    raw = sdk(stack, secret).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "hello from the SDK"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert answer.usage is not None
    state["secret"] = secret
    state["rid"] = raw.headers["x-request-id"]
    state["cost"] = (answer.usage.prompt_tokens * PRICE_IN + answer.usage.completion_tokens * PRICE_OUT) / 1e6
    assert state["cost"] >= 0.01


def test_the_request_shows_in_usage_and_requests_with_its_cost(page: Page, stack: Stack) -> None:
    rid, cost = state["rid"], state["cost"]
    open_page(page, "usage")
    key_filter = page.get_by_label("Key")
    key_filter.select_option(key_filter.locator("option", has_text="team-a").get_attribute("value"))
    row = page.locator(f'sg-usage tr[data-request-id="{rid}"]')
    for _ in range(
        60
    ):  # the ledger writes in batches (flush_interval 0.2 s): apply the filter until it is there
        if row.count():
            break
        page.get_by_role("button", name="Apply").click()
        page.wait_for_timeout(250)
    expect(row).to_contain_text(usd(cost))
    expect(row).to_contain_text("openai-up/main")
    expect(row).to_contain_text("200")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Export CSV").click()
    csv = Path(dl.value.path()).read_text()
    assert rid in csv and usd(cost)[1:].rstrip("0") in csv
    shot(page, "usage")

    row = request_row(page, rid)
    expect(row).to_contain_text(usd(cost))
    expect(row).to_contain_text("openai-up/main")
    expect(row).to_contain_text("team-a")  # the key's name, not its id
    row.get_by_role("button", name="Details").click()
    detail = page.locator("sg-requests section.detail")
    expect(detail).to_contain_text("gpt-fake")
    expect(detail).to_contain_text("hello from the SDK")  # console.log_bodies is on
    shot(page, "requests")


def test_client_text_is_shown_as_text(page: Page, stack: Stack) -> None:
    evil = '<img src=x onerror="document.title=1"><script>document.title=2</script>'
    raw = sdk(stack, state["secret"]).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": evil}]
    )
    assert evil in (raw.parse().choices[0].message.content or "")  # the fake echoes it back
    request_row(page, raw.headers["x-request-id"]).get_by_role("button", name="Details").click()
    detail = page.locator("sg-requests section.detail")
    expect(detail).to_contain_text(evil.replace('"', '\\"'))  # the bodies, JSON-escaped, as text
    assert page.locator("main img, main script").count() == 0
    assert page.title() not in ("1", "2")


def test_an_account_cools_down_after_a_429_and_recovers(page: Page, stack: Stack) -> None:
    open_page(page, "accounts")
    row = page.locator('tr[data-account="main"]')
    expect(row).to_have_attribute("data-state", "healthy")
    stack.openai.set_mode(OPENAI_KEY, "429_wait")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(stack, state["secret"]).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code in (429, 503)
    stack.openai.set_mode(OPENAI_KEY, "ok")
    page.get_by_role("button", name="Refresh").click()
    expect(row).to_have_attribute("data-state", "cooling", timeout=WAIT_MS)
    expect(row).to_contain_text("until")
    shot(page, "accounts-cooling")
    # the page refreshes on its own: the cooldown ends without anyone clicking
    expect(row).to_have_attribute("data-state", "healthy", timeout=WAIT_MS)
    shot(page, "accounts")


def test_add_an_account_test_it_and_try_a_route(page: Page, stack: Stack) -> None:
    open_page(page, "accounts")
    page.get_by_label("Provider").select_option("openai-up")
    page.get_by_label("Name").fill("added")
    page.get_by_label("API key").fill(EXTRA_KEY)
    page.get_by_role("button", name="Add account").click()
    row = page.locator('tr[data-account="added"]')
    expect(row).to_contain_text("(added here)")
    expect(page.get_by_label("API key")).to_have_value("")  # the key left with the request and is gone
    assert EXTRA_KEY not in page.content()
    row.get_by_role("button", name="Test added").click()
    expect(page.locator("#toast")).to_contain_text("added: OK")
    sent = [{k.lower(): v for k, v in r.headers.items()}.get("authorization") for r in stack.openai.requests]
    assert f"Bearer {EXTRA_KEY}" in sent  # the test request went out with the stored, decrypted key

    open_page(page, "routes")
    route = page.locator('tr[data-alias="claude"]')
    expect(route).to_contain_text("claude-up → claude-fake")
    expect(route).to_contain_text("claude-up/claude-main")  # the account that would serve next
    route.get_by_role("button", name="Try the route claude").click()
    expect(route.locator(".try-result")).to_contain_text("ok")
    page.get_by_role("button", name="Reload config").click()
    expect(page.locator("#toast")).to_contain_text("Config reloaded")


def test_revoking_the_key_makes_the_sdk_get_401(page: Page, stack: Stack) -> None:
    open_page(page, "keys")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke team-a").click()
    expect(page.get_by_label("Show revoked keys")).to_be_visible()
    page.get_by_label("Show revoked keys").check()
    expect(page.locator('tr[data-key-name="team-a"]')).to_have_attribute("data-status", "revoked")
    client = sdk(stack, state["secret"])
    for _ in range(100):  # revocation reaches the key cache within seconds
        try:
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "still?"}])
        except openai.AuthenticationError:
            break
        page.wait_for_timeout(100)
    else:
        pytest.fail("the revoked key still works")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "still?"}])


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def send_in_playground(page: Page, alias: str, protocol: str, text: str) -> Any:
    page.get_by_label("Model alias").select_option(alias)
    page.get_by_label("Client protocol").select_option(protocol)
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-done", re.compile("."), timeout=120_000)
    return answer


def test_the_playground_streams_from_the_local_vlm_with_an_image(page: Page, stack: Stack) -> None:
    open_page(page, "playground")
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Attach images or a video").set_input_files(
        files=[{"name": "red.png", "mimeType": "image/png", "buffer": png()}]
    )
    expect(page.locator("ul.attached li")).to_contain_text("red.png")
    answer = send_in_playground(page, "vlm", "openai", "What colour is this?")
    expect(answer).to_have_attribute("data-done", "1")
    expect(answer.locator("img.thumb")).to_have_count(0)  # the thumb is on the user's message
    expect(page.locator(".msg.user img.thumb")).to_have_count(1)
    metrics = page.locator(".metrics")
    expect(metrics).to_contain_text(re.compile(r"TTFT \d"))
    expect(metrics).to_contain_text(re.compile(r"\d+ out"))
    expect(metrics).to_contain_text("tokens/s")
    sent = page.get_by_role("tabpanel").first
    expect(sent).to_contain_text('"stream": true')
    expect(sent).to_contain_text('"image_url"')
    shot(page, "playground-vlm")


def test_the_wire_view_shows_the_upstream_request_in_another_protocol(page: Page, stack: Stack) -> None:
    open_page(page, "playground")
    page.get_by_role("button", name="New chat").click()
    stack.anthropic.reset()
    answer = send_in_playground(page, "claude", "openai", "convert me")
    expect(answer).to_have_attribute("data-done", "1")
    expect(answer).to_contain_text("convert me")  # the fake echoes the prompt
    page.get_by_role("tab", name="Wire").click()
    wire = page.locator(".wire")
    expect(wire.locator(".client-request > summary")).to_contain_text("/v1/chat/completions")
    up = wire.locator(".upstream-request")
    expect(up.locator("> summary")).to_contain_text("/v1/messages")
    expect(up.locator("pre.body")).to_contain_text('"max_tokens"')
    expect(up.locator("pre.body")).to_contain_text('"messages"')
    assert ANTHROPIC_KEY not in page.content()  # credentials are redacted in the capture
    assert stack.anthropic.requests and stack.anthropic.last.path == "/v1/messages"
    wire.locator(".upstream-response > summary").click()
    expect(wire.locator(".upstream-response pre.body")).to_contain_text("message_start")
    shot(page, "playground-wire")


def test_csrf_and_requests_without_a_session_are_refused(page: Page, stack: Stack) -> None:
    no_csrf = page.evaluate(
        """async () => (await fetch('/admin/keys', {method: 'POST', headers: {'content-type': 'application/json'},
        body: JSON.stringify({name: 'csrf-less'})})).status"""
    )
    assert no_csrf == 403
    wrong_csrf = page.evaluate(
        """async () => (await fetch('/admin/keys', {method: 'POST', headers: {'content-type': 'application/json',
        'x-smolgate-csrf': 'forged'}, body: JSON.stringify({name: 'forged'})})).status"""
    )
    assert wrong_csrf == 403
    chat_no_csrf = page.evaluate(
        """async () => (await fetch('/v1/chat/completions', {method: 'POST', headers: {'content-type':
        'application/json'}, body: JSON.stringify({model: 'gpt', messages: [{role: 'user', content: 'x'}]})})).status"""
    )
    assert chat_no_csrf in (401, 403)  # the session opens client routes only with the CSRF header
    assert page.evaluate("async () => (await fetch('/admin/keys')).status") == 200  # reads need no CSRF
    names = [k["name"] for k in httpx.get(stack.url + "/admin/keys", headers=ADMIN).json()["keys"]]
    assert "csrf-less" not in names and "forged" not in names
    for path in ("/admin/keys", "/admin/usage", "/admin/requests", "/ui/api/session"):
        assert httpx.get(stack.url + path).status_code == 401, path  # no session, no key
    assert httpx.post(stack.url + "/admin/keys", json={"name": "x"}).status_code in (401, 403)


def test_every_page_renders_accessibly_without_errors(page: Page, stack: Stack) -> None:
    headers = httpx.get(stack.url + "/ui/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    for name in ("overview", "accounts", "keys", "usage", "routes", "requests", "playground", "audit"):
        open_page(page, name)
        expect(page.locator(f"sg-{name} .status.error")).to_have_count(0)
        expect(page.locator("h1")).to_be_visible()
        expect(page.locator(f'nav a[aria-current="page"][href="#/{name}"]')).to_have_count(1)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('main input, main select, main textarea, main button')]
            .filter((el) => el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
              && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map((el) => el.outerHTML.slice(0, 80))"""
        )
        assert unlabelled == [], name
        shot(page, name)
    open_page(page, "audit")
    audit = page.locator("sg-audit tbody")
    expect(audit).to_contain_text("key.create")
    expect(audit).to_contain_text("key.revoke")
    # keyboard: the nav is reachable and followable without a mouse
    page.locator('nav a[href="#/keys"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("sg-keys[data-ready]")
    assert page.errors == [], page.errors  # type: ignore[attr-defined]
    # sign out ends the session: the API refuses the old cookie
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("async () => (await fetch('/admin/keys')).status") == 401
