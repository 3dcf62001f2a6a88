"""One tree's engine on the packaged GGUF: load, then greedy decode N tokens R times; prints JSON."""

import json
import sys
import time

tree = sys.argv[1]
sys.path.insert(0, tree + "/src")
try:
    from smolgate.engine.process import tune_process

    tune_process()
except ImportError:
    import smolgate  # noqa: F401  (the old tree tuned at import)
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart, packaged_gguf_path  # noqa: E402  (after process tuning)

quant = sys.argv[2] if len(sys.argv) > 2 else None
t0 = time.perf_counter()
eng = Engine.load(str(packaged_gguf_path()), quant=quant)
load_s = time.perf_counter() - t0
msgs = [ChatMessage("user", [TextPart("Write a short story about a lighthouse keeper and a storm.")])]
p = GenerationParams(max_tokens=96, temperature=0.0)
eng.generate(msgs, p)  # warm
runs = []
for _ in range(5):
    t = time.perf_counter()
    r = eng.generate(msgs, p)
    runs.append((time.perf_counter() - t, r.completion_tokens))
best = min(s / n for s, n in runs)
print(
    json.dumps({"tree": tree, "quant": quant, "load_s": load_s, "tok_s_best": 1 / best, "text": r.text[:40]})
)
eng.close()
