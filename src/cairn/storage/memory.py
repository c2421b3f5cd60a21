"""An in-memory backend for unit tests."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cairn.errors import ObjectNotFoundError


class MemoryStorage:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def exists(self, key: str) -> bool:
        return key in self._data

    def missing(self, keys: Iterable[str]) -> set[str]:
        return {k for k in keys if k not in self._data}

    def put(self, key: str, data: bytes | memoryview) -> bool:
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = bytes(data)
            return True

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        return self.put(key, os.pread(fd, length, offset))

    def get(self, key: str) -> bytes:
        try:
            return self._data[key]
        except KeyError:
            raise ObjectNotFoundError(f"object {key} is not in the store", key) from None

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def size(self, key: str) -> int:
        return len(self.get(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in list(self._data) if k.startswith(prefix)))

    def sync(self) -> None:
        pass

    def local_path(self, key: str) -> Path | None:
        return None
