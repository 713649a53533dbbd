"""A local HTTP server that speaks the OpenAI chat completions protocol: it answers every request
with the same text (streamed as server-sent events when asked to), and records what it was sent.

``hold()`` makes streamed answers stop after their first pieces until ``release()``: a test can
then see the first words arrive before the answer is complete. A hold that nobody released ends by
itself after ``HOLD_SECONDS`` and is counted in ``expired``: a client that buffered the whole
answer would only ever see it that way, and the test must say so."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dropvec.stack import free_port

ANSWER = "Before college the author wrote short stories and programmed an IBM 1401."
PIECES = [word + " " for word in ANSWER.split(" ")[:-1]] + [ANSWER.split(" ")[-1]]
#: Pieces sent before a held answer waits.
FIRST = 2
#: Longest a held answer waits for ``release()``.
HOLD_SECONDS = 60


class FakeLLM:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        #: Holds that ended by themselves, not by ``release()``.
        self.expired = 0
        self._gate = threading.Event()
        self._gate.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                if body.get("stream"):
                    self._stream(body)
                else:
                    self._reply(body)

            def _reply(self, body: dict[str, Any]) -> None:
                message = {"role": "assistant", "content": ANSWER}
                data = json.dumps(
                    {
                        **_header(body, "chat.completion"),
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i, piece in enumerate(PIECES):
                    if i == FIRST and not fake._gate.wait(HOLD_SECONDS):
                        fake.expired += 1
                    self._event(body, {"role": "assistant", "content": piece}, None)
                self._event(body, {}, "stop")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, body: dict[str, Any], delta: dict[str, str], finish: str | None) -> None:
                chunk = {
                    **_header(body, "chat.completion.chunk"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def prompt(self, index: int = -1) -> str:
        """Every message of a recorded request, as one text."""
        return "\n".join(str(m.get("content", "")) for m in self.requests[index]["body"]["messages"])

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _header(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": kind, "created": 0, "model": body["model"]}
