"""The bridge's rules without a server: which upstream errors mean "this model cannot see", and its config."""

from __future__ import annotations

import pytest

from smolgate.config import ConfigError, parse_config
from smolgate.policies.vision_bridge import DEFAULT_PROMPT, VisionBridge, refuses_media
from smolgate.routing import Route


@pytest.mark.parametrize(
    "message",
    [
        "Invalid content type. image_url is only supported by certain models.",  # OpenAI
        "Image input modality is not enabled for models/gemma-3-1b-it",  # Gemini
        "Video input modality is not enabled for models/gemini-x",
        "This model does not support image input.",  # Anthropic-compatible upstreams
        "This model doesn't support the image content block that you provided.",  # Bedrock
        "this model is missing data required for image input",  # Ollama (runner)
        '"llama3.2" does not support vision',  # Ollama (capabilities)
        "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",  # llama.cpp
        "Qwen/Qwen3-8B is not a multimodal model",  # vLLM
        "Model does not support images. Please use a model that does.",  # LM Studio
        "No endpoints found that support image input",  # OpenRouter
        "Failed to deserialize the JSON body: unknown variant `image_url`, expected `text`",  # DeepSeek
    ],
)
def test_each_upstreams_image_refusal_is_recognised(message):
    assert refuses_media(message)


@pytest.mark.parametrize(
    "message",
    [
        "Could not process image",  # a broken image, not a blind model: the bridge would not help
        "messages.0.content.1.image.source.base64.media_type: Input should be 'image/jpeg'",
        "Rate limit reached for gpt-4o",
        "This model's maximum context length is 8192 tokens",
        '"llama3" does not support tools',
        "scripted failure 400",
    ],
)
def test_other_errors_are_not_taken_for_an_image_refusal(message):
    assert not refuses_media(message)


BASE = """
providers:
  - {name: local, protocol: local}
  - {name: up, protocol: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  - name: a
    targets: [{provider: up, model: m1, vision: false}, {provider: up, model: m2, vision: true}]
    vision_bridge: {mode: off, prompt: Read it.}
  - name: b
    targets: [{provider: up, model: m3}]
"""


def test_per_alias_settings_inherit_the_global_ones_and_a_bare_off_means_off():
    cfg = parse_config(BASE + "vision_bridge: {max_tokens: 64, max_images: 3}\n")
    bridge = VisionBridge(cfg, {}, lambda r, p: None)  # type: ignore[arg-type, return-value]
    a, b = bridge.by_alias["a"], bridge.default
    assert (a.on, a.prompt, a.max_tokens, a.max_images, a.provider) == (False, "Read it.", 64, 3, "local")
    assert (b.on, b.prompt, b.max_tokens, b.max_images, b.provider) == (True, DEFAULT_PROMPT, 64, 3, "local")
    assert not bridge.sees(Route("up", "m1")) and bridge.sees(Route("up", "m2"))


def test_the_bridge_model_must_be_a_local_provider():
    with pytest.raises(ConfigError, match=r"vision_bridge.model: no local provider named 'up'"):
        parse_config(BASE + "vision_bridge: {model: up/gpt-4o}\n")
    with pytest.raises(ConfigError, match=r"models\[1\].vision_bridge.model: no local provider named 'nope'"):
        parse_config(
            BASE.replace(
                "targets: [{provider: up, model: m3}]",
                "targets: [{provider: up, model: m3}]\n    vision_bridge: {model: nope}",
            )
        )
    assert parse_config(BASE + "vision_bridge: {model: local/SmolVLM2-500M}\n").vision_bridge.model
