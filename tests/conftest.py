"""Suite-wide settings: the engine's process defaults (OpenMP waiting, huge pages) before torch initialises, as
an engine started in production gets them (smolgate.engine.process)."""

from smolgate.engine.process import tune_process

tune_process()
