"""A real server in a thread of the current process, on 127.0.0.1 and a free port: for tests
and notebooks that want a server without a separate process.

    with ServerThread(ServerSettings(database_url=url, store=path)) as server:
        os.environ["CAIRN_URL"] = server.url
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

from cairn.errors import StoreError
from cairn.server.deps import ServerSettings


class ServerThread:
    def __init__(self, settings: ServerSettings, *, log_level: str = "warning") -> None:
        import uvicorn

        from cairn.server.app import create_app

        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level=log_level, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StoreError("the Cairn server thread did not start")
            time.sleep(0.005)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Shut the server down (it closes its database and store on the way out). With
        ``wait=False`` only ask it to: the thread finishes on its own a moment later (call
        ``stop()`` again to wait for it), so a test suite need not wait for each server."""
        self._server.should_exit = True
        if wait:
            self._thread.join(30)
            self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["ServerThread"]
