"""On-device inference engine. The gateway imports only `smolgate.engine.engine` (the facade)."""
