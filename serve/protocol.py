"""uvicorn's HTTP protocol (httptools) with a deadline for a request's headers.

uvicorn closes idle keep-alive connections, but a connection that sends nothing, or half a
request line and headers, is held open for as long as the client likes: a few hundred such
connections hold a worker's sockets. Here every request's headers must be complete within
`header_timeout` seconds of its first byte (or of the connection, for the first request); a
late one is answered 408 and closed. The body's deadline is the middleware's
(`serve.metrics.BodyLimitAndMetrics`), as the body is read by the app.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 29\r\nconnection: close\r\n\r\nrequest headers came too late"
)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """`uvicorn.run(http=HeaderDeadlineProtocol)`; `header_timeout` is set per process by
    `serve.app.app_factory` from the settings before any connection is accepted."""

    header_timeout: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._too_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()
