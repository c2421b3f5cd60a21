"""An in-memory backend for unit tests."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cairn.errors import ObjectNotFoundError
from cairn.storage.base import Signer


class MemoryStorage:
    signer: Signer | None = None

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._data: dict[str, bytes] = {}
        self._mtime: dict[str, float] = {}
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
            self._mtime[key] = time.time()
            return True

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        return self.put(key, os.pread(fd, length, offset))

    def get(self, key: str) -> bytes:
        try:
            return self._data[key]
        except KeyError:
            raise ObjectNotFoundError(f"object {key} is not in the store", key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def iter_bytes(self, key: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        data = self.get(key)
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def size(self, key: str) -> int:
        return len(self.get(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._mtime.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in list(self._data) if k.startswith(prefix)))

    def list_info(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        for key in self.list(prefix):
            with self._lock:
                data, mtime = self._data.get(key), self._mtime.get(key)
            if data is not None and mtime is not None:
                yield key, len(data), mtime

    def copy(self, src: str, dst: str) -> None:
        data = self.get(src)
        with self._lock:
            self._data[dst] = data
            self._mtime[dst] = time.time()

    def sync(self) -> None:
        pass

    def local_path(self, key: str) -> Path | None:
        return None
