"""Trees, page indexes and chunk lists put during a log, kept until the data they name is on
the server. A log of millions of files puts thousands of tree objects (about 120 bytes per
file): past a few MiB they wait in a temporary file, not in memory."""

from __future__ import annotations

from collections.abc import Iterator

from cairn.objects.spill import Spill

IN_MEMORY_BYTES = 8 << 20  # held in memory before they spill to disk


class Deferred:
    def __init__(self, in_memory_bytes: int | None = None) -> None:
        self.in_memory_bytes = in_memory_bytes or IN_MEMORY_BYTES
        self._held: list[tuple[str, bytes]] = []
        self._held_bytes = 0
        self._spill: Spill | None = None

    def __bool__(self) -> bool:
        return bool(self._held) or self._spill is not None

    def add(self, digest: str, blob: bytes) -> None:
        self._held.append((digest, blob))
        self._held_bytes += len(blob)
        if self._held_bytes >= self.in_memory_bytes:
            if self._spill is None:
                self._spill = Spill()
            self._spill.append(self._held)
            self._held, self._held_bytes = [], 0

    @property
    def spilled(self) -> int:
        """Objects written to the temporary file so far."""
        return self._spill.records if self._spill is not None else 0

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every object added, in the order added."""
        if self._spill is not None:
            for batch in self._spill.batches():
                yield from batch
        yield from self._held

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._held, self._held_bytes = [], 0
