"""Model definitions: one module per component, names matching the HF checkpoints."""
