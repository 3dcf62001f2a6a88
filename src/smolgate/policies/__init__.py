"""Request policies built on the gateway's own model: privacy (local-only, redaction with restore)."""
