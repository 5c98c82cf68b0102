"""A real HTTP endpoint that records what it is sent: the chat platform's callback in tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.proxy import free_port
from support.wait import eventually


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.stalls = 0
        """A platform that hangs: this many requests are held past the caller's patience
        (and not recorded: the caller cannot know whether they arrived)."""
        self.stall_s = 2.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if receiver.stalls > 0:
                    receiver.stalls -= 1
                    time.sleep(receiver.stall_s)  # the platform hanging, in its own thread
                    self.send_response(504)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers.items()), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    async def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            bodies = [body for _, body in self.received]
            return bodies if len(bodies) >= count else None

        return await eventually(enough, timeout=timeout, what=f"{count} callbacks")
