"""The same server as an ASGI application, for uvicorn (``--http uvicorn``).

Not the default: the native transport (``http.py``) measured faster. Kept because
it is the yardstick that choice was made against, and for deployments that want
uvicorn's HTTP handling (h11, HTTP/1.1 edge cases, TLS options).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .app import ModelServer, RequestMeta, Response
from .encode import error_body

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiApp:
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        limit = self.server.cfg.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send(send, Response(413, error_body(f"request body larger than {limit} bytes")))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send(
                    send, Response(413, error_body(f"request body larger than {limit} bytes"))
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        path = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Response] = loop.create_future()

        def respond(resp: Response) -> None:
            if not fut.done():  # the client may have gone and the await been cancelled
                fut.set_result(resp)

        self.server.handle(scope["method"], path, b"".join(chunks), respond, _meta(scope))
        await _send(send, await fut)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _meta(scope: Scope) -> RequestMeta:
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        if name in (
            b"content-type",
            b"inference-header-content-length",
            b"content-encoding",
            b"x-request-id",
        ):
            found[name] = value
    return RequestMeta(
        found.get(b"content-type"),
        found.get(b"inference-header-content-length"),
        found.get(b"content-encoding"),
        found.get(b"x-request-id"),
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send(send: Send, resp: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [
                (b"content-type", resp.content_type.encode()),
                (b"content-length", str(len(resp.body)).encode()),
                *((k.encode(), v.encode()) for k, v in resp.headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": resp.body})
