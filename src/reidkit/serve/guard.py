"""The outer layer of the service's app, in plain ASGI: what is checked before a route reads a request.

- Write requests (any method but GET, HEAD and OPTIONS under ``/gallery``) are authenticated from their headers
  before one byte of their body is read: an unauthenticated upload is refused at once, whatever its size.
- The body is capped while it streams: a declared ``Content-Length`` over the cap is refused at once, and the
  bytes of a chunked (or mis-declared) body are counted as the app receives them, refused with 413 as soon as
  they pass the cap. The cap depends on the route (:func:`body_limit`).
- The body must arrive within ``body_timeout_s`` seconds, with no pause longer than ``body_idle_timeout_s``:
  a stalled upload is answered 408.
- Any unexpected exception becomes a logged 500 JSON answer with an error id, never a traceback.

Every refusal of a body not read to its end says ``Connection: close``, so the server never drains it.
Needs the ``[serve]`` extra (anyio comes with Starlette); imported by ``create_app`` only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from reidkit.serve.service import Service
from reidkit.serve.uploads import (
    DEFAULT_BODY_IDLE_TIMEOUT_S,
    DEFAULT_BODY_TIMEOUT_S,
    MAX_IMAGES_PER_REQUEST,
    REQUEST_OVERHEAD_BYTES,
    UploadError,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LOGGER = logging.getLogger("reidkit.serve")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_write(method: str, path: str) -> bool:
    """True for the requests that need the bearer token: anything but a read under ``/gallery``."""
    return method not in _READ_METHODS and (path.rstrip("/") == "/gallery" or path.startswith("/gallery/"))


def body_limit(service: Service, method: str, path: str) -> int:
    """The largest body accepted for a request: a full batch of images for a write, one image for a search,
    the form overhead only for anything else."""
    if is_write(method, path):
        return service.max_upload_bytes * MAX_IMAGES_PER_REQUEST + REQUEST_OVERHEAD_BYTES
    if method == "POST" and path == "/search":
        return service.max_upload_bytes + REQUEST_OVERHEAD_BYTES
    return REQUEST_OVERHEAD_BYTES


class BodyCounter:
    """Body bytes the app has received, over all requests (tests check that refusals read little)."""

    def __init__(self) -> None:
        self.total = 0


class _Refused(Exception):
    """Raised into the app by :class:`_Body` once the guard refuses the request's body."""


class _Body:
    """The ``receive`` of one request, counting and timing its body."""

    def __init__(
        self, receive: Receive, *, limit: int, timeout_s: float, idle_s: float, counter: BodyCounter
    ):
        self._receive = receive
        self.limit = limit
        self.idle_s = idle_s
        self.deadline = anyio.current_time() + timeout_s
        self.counter = counter
        self.received = 0
        self.complete = False
        self.refusal: tuple[int, str] | None = None

    async def receive(self) -> Message:
        if self.refusal is not None:
            raise _Refused
        if self.complete:  # after the body: the app waits for a disconnect, untimed
            return await self._receive()
        wait = max(0.0, min(self.idle_s, self.deadline - anyio.current_time()))
        with anyio.move_on_after(wait) as timer:
            message = await self._receive()
        if timer.cancelled_caught:
            self.refusal = (408, f"the request body did not arrive in time ({self.received} bytes received)")
            raise _Refused
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            self.received += size
            self.counter.total += size
            if self.received > self.limit:
                self.refusal = (413, f"the request body is over the limit of {self.limit} bytes")
                raise _Refused
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message


async def answer(
    send: Send, status: int, detail: str, *, close: bool, headers: dict[str, str] | None = None
) -> None:
    """Send a JSON ``{"detail": ...}`` response, with ``Connection: close`` when ``close``."""
    body = json.dumps({"detail": detail}).encode()
    fields = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    fields += [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    if close:
        fields.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware applying the checks of the module docstring to every HTTP request of ``app``."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        service: Service,
        counter: BodyCounter,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        body_idle_timeout_s: float = DEFAULT_BODY_IDLE_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.service = service
        self.counter = counter
        self.body_timeout_s = body_timeout_s
        self.body_idle_timeout_s = body_idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        limit = body_limit(self.service, method, path)
        refusal = self._refuse_early(method, path, headers, limit)
        if refusal is not None:
            await answer(send, *refusal, close=True)
            return
        body = _Body(
            receive,
            limit=limit,
            timeout_s=self.body_timeout_s,
            idle_s=self.body_idle_timeout_s,
            counter=self.counter,
        )
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if body.refusal is None:  # once refused, the app's own answer (often a 400) is dropped
                started = True
                await send(message)

        try:
            await self.app(scope, body.receive, guarded_send)
        except Exception:
            if body.refusal is None:
                error_id = uuid.uuid4().hex[:12]
                LOGGER.exception("unexpected error %s answering %s %s", error_id, method, path)
                if started:
                    raise
                await answer(
                    send,
                    500,
                    f"internal server error {error_id} (logged on the server)",
                    close=not body.complete,
                )
                return
        if body.refusal is not None and not started:
            await answer(send, *body.refusal, close=True)

    def _refuse_early(
        self, method: str, path: str, headers: dict[str, str], limit: int
    ) -> tuple[int, str] | None:
        """The ``(status, detail)`` refusing a request from its headers alone, or None."""
        if is_write(method, path):
            try:
                self.service.check_token(headers.get("authorization"))
            except UploadError as error:
                return error.status, str(error)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "invalid Content-Length header"
            if int(length) > limit:
                return 413, f"request of {length} bytes is over the limit of {limit} bytes"
        return None
