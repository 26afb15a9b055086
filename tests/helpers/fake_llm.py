"""A deterministic OpenAI-compatible chat server on 127.0.0.1 for autointerp tests.

Explainer requests: the reply names the most frequent marked span of the examples ("Explanation: tokens like 'X'").
Judge requests: for each excerpt, 1 when it contains 'X' (detection) or a marked span holding it (fuzzing).
`mode`: "ok", "noexplain" (the explainer replies nothing), "badjudge" (the judge replies without a list), "fail"
(HTTP 500).
"""

import contextlib
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply_for(messages: list[dict], mode: str) -> str:
    system, user = messages[0]["content"], messages[-1]["content"]
    explainer = user.endswith("What does the neuron respond to?")
    if explainer and mode == "noexplain":
        return "   "
    if not explainer and mode == "badjudge":
        return "I am not sure what you mean."
    if explainer:
        spans = Counter(s.strip() for s in re.findall(r"<<(.*?)>>", user))
        return f"Thinking...\nExplanation: tokens like '{spans.most_common(1)[0][0] if spans else ''}'"
    key = re.search(r"tokens like '(.*?)'", user)
    key = key.group(1) if key else ""
    excerpts = re.findall(r"^\d+\. (.*)$", user.split("Excerpts:\n", 1)[1], re.M)
    fuzz = "marked tokens" in system
    out = [int(bool(key) and (any(key in s for s in re.findall(r"<<(.*?)>>", e)) if fuzz else key in e))
           for e in excerpts]
    return json.dumps(out)


@contextlib.contextmanager
def fake_llm(mode: str = "ok"):
    """Yields (base URL, request counter)."""
    calls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            calls["n"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if mode == "fail":
                self.send_response(500)
                self.end_headers()
                return
            out = json.dumps({"choices": [{"message": {"role": "assistant",
                                                       "content": reply_for(body["messages"], mode)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", calls
    finally:
        srv.shutdown()
        srv.server_close()
