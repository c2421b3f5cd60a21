"""A running run's sign of life: a thread that touches the run in the registry now and then.

A process killed with SIGKILL, by the out-of-memory killer, or with its machine cannot mark
its run finished. Readers report a 'running' run whose last heartbeat is older than
`cairn.config.run_timeout` as crashed (see `cairn.service.sql.runs`).
"""

from __future__ import annotations

import logging
import threading

from cairn import config
from cairn.service.registry import Registry

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, registry: Registry, run_id: str) -> None:
        self._registry = registry
        self._run_id = run_id
        self._stop = threading.Event()
        self._interval = config.heartbeat_interval()
        self._thread = threading.Thread(
            target=self._beat, name=f"cairn-heartbeat-{run_id}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._registry.update_run(self._run_id)
            except Exception as exc:  # a missed beat is harmless; the next one may get through
                log.debug("heartbeat of run %s failed: %s", self._run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
