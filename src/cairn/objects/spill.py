"""Spill: batches of records kept in an anonymous temporary file instead of memory, read back in
the order they were written. A log of millions of files keeps its per-file records here."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from typing import Any


class Spill:
    def __init__(self) -> None:
        # removed by the OS when closed, or when the process dies
        self._file = tempfile.TemporaryFile(prefix="cairn-spill-")  # noqa: SIM115 (closed by close())
        self.records = 0

    def append(self, batch: list[Any]) -> None:
        if batch:
            self._file.seek(0, os.SEEK_END)
            pickle.dump(batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self.records += len(batch)

    def batches(self) -> Iterator[list[Any]]:
        """Every batch appended so far, in order."""
        self._file.flush()
        offset = 0
        while True:
            self._file.seek(offset)
            try:
                batch = pickle.load(self._file)  # our own file, written above
            except EOFError:
                return
            offset = self._file.tell()
            yield batch

    def close(self) -> None:
        self._file.close()


__all__ = ["Spill"]
