"""Fake models that cannot see: a model whose name contains `textonly` refuses a request carrying an image or a
video the way its real upstream words it (status and message), before running anything. The wordings are the
real APIs' (see smolgate/policies/vision_bridge.py `_REFUSALS` for where each comes from)."""

from __future__ import annotations

from typing import Any

TEXT_ONLY = "textonly"
_PART_TYPES = {"image", "image_url", "input_image", "video_url", "input_video"}
_MEDIA_KEYS = {"inlineData", "inline_data", "fileData", "file_data"}

OPENAI = (400, "Invalid content type. image_url is only supported by certain models.")
ANTHROPIC = (400, "This model does not support image input.")
OLLAMA = (500, "this model is missing data required for image input")


def gemini(model: str) -> tuple[int, str]:
    return 400, f"Image input modality is not enabled for models/{model}"


def has_media(node: Any) -> bool:
    """Whether a wire body (any protocol) carries an image or video part anywhere (tool results included)."""
    if isinstance(node, dict):
        if node.get("type") in _PART_TYPES or _MEDIA_KEYS & node.keys():
            return True
        if isinstance(node.get("images"), list) and node["images"]:  # Ollama
            return True
        return any(has_media(v) for v in node.values())
    if isinstance(node, list):
        return any(has_media(v) for v in node)
    return False


def refuses(body: Any) -> bool:
    """A text-only model asked about an image."""
    return isinstance(body, dict) and TEXT_ONLY in str(body.get("model", "")) and has_media(body)
