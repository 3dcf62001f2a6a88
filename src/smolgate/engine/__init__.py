"""On-device inference engine. Callers need only `smolgate.engine.api` (torch-free: requests, chunks, errors, the
`LocalEngine` protocol); `smolgate.engine.engine.Engine` implements it. Importing this package does nothing else:
process tuning happens when an engine starts (process.py)."""
