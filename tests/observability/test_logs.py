"""The log queue in front of the writer thread: full means dropped and counted, never a wait."""

from __future__ import annotations

import logging
import queue

import orjson

from smolgate.observability.logs import DroppingQueueHandler, JsonFormatter, request_id


def test_a_full_queue_drops_and_counts_instead_of_waiting():
    q: queue.Queue[logging.LogRecord] = queue.Queue(2)
    h = DroppingQueueHandler(q)
    for i in range(5):
        h.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "line %d", (i,), None))
    assert q.qsize() == 2 and h.dropped == 3
    assert [q.get().getMessage() for _ in range(2)] == ["line 0", "line 1"]


def test_json_line_carries_the_request_id_and_fields():
    token = request_id.set("req_abc")
    try:
        rec = logging.LogRecord("smolgate.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        rec.fields = {"status": 200, "path": "/x"}
        out = orjson.loads(JsonFormatter().format(rec))
    finally:
        request_id.reset(token)
    assert out["message"] == "GET /x" and out["request_id"] == "req_abc"
    assert out["level"] == "info" and out["logger"] == "smolgate.access"
    assert out["status"] == 200 and out["time"].endswith("Z")
