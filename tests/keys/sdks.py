"""The five client protocols through their official SDKs (raw HTTP would not prove an SDK reads our errors):
one call each, and what the SDK raises when refused."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("openai", "responses", "anthropic", "gemini", "ollama")


@dataclass
class Refused:
    status: int
    kind: str  # OpenAI: error code; Anthropic: error type; Gemini: status; Ollama: the message
    message: str


def ask(proto: str, url: str, key: str, model: str = "via-openai", text: str = "hi") -> str:
    if proto in ("openai", "responses"):
        import openai

        oc = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
        if proto == "responses":
            return oc.responses.create(model=model, input=text).output_text
        r = oc.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        return r.choices[0].message.content or ""
    if proto == "anthropic":
        import anthropic

        ac = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=30)
        m = ac.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": text}])
        return m.content[0].text  # type: ignore[union-attr]
    if proto == "gemini":
        from google import genai
        from google.genai import types

        gc = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url))
        return gc.models.generate_content(model=model, contents=text).text or ""
    import ollama

    olc = ollama.Client(host=url, timeout=30, headers={"authorization": f"Bearer {key}"})
    return olc.chat(model=model, messages=[{"role": "user", "content": text}]).message.content or ""


def refused(proto: str, url: str, key: str, model: str = "via-openai") -> Refused:
    import anthropic
    import ollama
    import openai
    from google.genai import errors as gerrors

    try:
        ask(proto, url, key, model)
    except openai.APIStatusError as e:
        return Refused(e.status_code, str(e.code), e.message)
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return Refused(e.status_code, body["error"]["type"], body["error"]["message"])
    except gerrors.APIError as e:
        return Refused(e.code, str(e.status), str(e.message))
    except ollama.ResponseError as e:
        return Refused(e.status_code, e.error, e.error)
    raise AssertionError(f"{proto}: the request was not refused")
