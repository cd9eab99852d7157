"""The lifetime both HTTP test doubles share: a server on 127.0.0.1 served from a daemon thread, started with `with`
or `start()` and stopped (sockets closed, thread joined) with `stop()`."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self

__all__ = ["ServedDouble"]


class ServedDouble:
    """Base of a double whose `_make_server()` builds its HTTP server on `self._port` (0: any free port)."""

    _thread_name = "double"

    def __init__(self, *, port: int = 0) -> None:
        self._port = port
        self._stopping = threading.Event()
        """Set once stop() begins: handlers that wait (latency, trickle) stop waiting."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = self._make_server()
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
