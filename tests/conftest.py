"""Suite-wide settings: the engine's process defaults (OpenMP waiting, huge pages) before torch initialises, as
an engine started in production gets them (smolgate.engine.process); and a private data dir, so no test (nor a
gateway subprocess it starts, which inherits the environment) writes its store or key file into the real home."""

import atexit
import os
import shutil
import tempfile

from smolgate.engine.process import tune_process

tune_process()

_HOME = tempfile.mkdtemp(prefix="smolgate-test-home-")
os.environ["SMOLGATE_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)
