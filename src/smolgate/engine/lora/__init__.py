"""LoRA adapters on the embedded engine: read PEFT adapters (peft_format), serve several at once per batch row
(layer, attach)."""
