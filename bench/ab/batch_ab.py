"""One tree's engine on the packaged GGUF: 8 threads generate 64 tokens at once, 3 waves; best aggregate tok/s."""

import json
import sys
import threading
import time

tree = sys.argv[1]
sys.path.insert(0, tree + "/src")
try:
    from smolgate.engine.process import tune_process

    tune_process()
except ImportError:
    import smolgate  # noqa: F401
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart, packaged_gguf_path  # noqa: E402  (after process tuning)

eng = Engine.load(str(packaged_gguf_path()))
msgs = [ChatMessage("user", [TextPart("Write a short story about a lighthouse keeper.")])]
p = GenerationParams(max_tokens=64, temperature=0.0)
eng.generate(msgs, p)
best = 0.0
for _ in range(3):
    n = [0] * 8

    def run(i: int, n: list[int] = n) -> None:
        n[i] = eng.generate(msgs, p).completion_tokens

    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    t0 = time.perf_counter()
    [t.start() for t in ts]
    [t.join() for t in ts]
    best = max(best, sum(n) / (time.perf_counter() - t0))
print(json.dumps({"tree": tree, "batched_tok_s": best}))
eng.close()
