"""A small OpenAI-compatible chat completions server on loopback, for flows with llm nodes.

It answers deterministically from the conversation it receives, so tests can check that the
prompt, the chat history and the connection all reached the model. It is what a user does
when they point an OpenAI connection's API base at a local model server.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_for(messages: list[dict]) -> str:
    user_turns = [m.get("content", "") for m in messages if m.get("role") == "user"]
    question = user_turns[-1].strip() if user_turns else ""
    if isinstance(question, list):
        question = " ".join(part.get("text", "") for part in question if isinstance(part, dict))
    return f"Local model, turn {len(user_turns)}: you asked '{question}'."


class Handler(BaseHTTPRequestHandler):
    server_version = "LocalLLM/1.0"
    requests_seen: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output clean
        return

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "gpt-3.5-turbo", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._json(401, {"error": {"message": "missing API key", "type": "invalid_request_error"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        Handler.requests_seen.append(request)
        text = answer_for(request.get("messages") or [])
        model = request.get("model", "gpt-3.5-turbo")
        if request.get("stream"):
            self._stream(text, model)
            return
        self._json(
            200,
            {
                "id": "chatcmpl-local",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 20},
            },
        )

    def _stream(self, text: str, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for index, word in enumerate(text.split(" ")):
            chunk = word if index == 0 else " " + word
            payload = {
                "id": "chatcmpl-local",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": None}],
            }
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def start(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    import sys

    running = start(port=int(sys.argv[1]) if len(sys.argv) > 1 else 9999)
    print(f"Local OpenAI-compatible server on http://127.0.0.1:{running.server_port}/v1")
    threading.Event().wait()
