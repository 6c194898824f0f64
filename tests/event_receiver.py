"""A webhook consumer as a real HTTP server on loopback: it verifies every signature the way a
receiver should (opscore.signatures.verify, the timestamp within five minutes) and can be told
to fail its next requests."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opscore.signatures import verify

from .servers import ServerThread, wait_for


class EventReceiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        self.server = ServerThread(Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    def start(self) -> EventReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    async def _hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        headers = request.headers
        stamp, signature = headers.get("x-opscore-timestamp"), headers.get("x-opscore-signature")
        valid = any(
            verify(secret, stamp, body, signature, now=time.time()) for secret in self.secrets
        )
        with self.lock:
            if not valid:
                self.bad_signatures += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "try later"}, status_code=503)
            self.received.append(
                {
                    "event": json.loads(body),
                    "type": headers.get("x-opscore-event"),
                    "delivery": headers.get("x-opscore-delivery"),
                }
            )
        return JSONResponse({"ok": True})

    def types(self) -> list[str]:
        with self.lock:
            return [r["type"] for r in self.received]

    def wait_for_types(self, *wanted: str, timeout: float = 20) -> list[dict[str, Any]]:
        """Block until every wanted type has arrived (bounded); the matching deliveries."""

        def arrived() -> list[dict[str, Any]] | None:
            with self.lock:
                got = [r for r in self.received if r["type"] in wanted]
            return got if {r["type"] for r in got} >= set(wanted) else None

        return wait_for(arrived, timeout=timeout, interval=0.05)
