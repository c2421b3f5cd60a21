"""Local-disk backend: one file per key, written to a temp file and linked into place."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cairn.errors import ObjectNotFoundError, StoreError

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (Linux syncfs), else everything (sync)."""
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.url = str(self.root)
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc}") from exc
        self._dirty = False
        self._made_dirs: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return os.path.exists(self.root / key)

    def missing(self, keys: Iterable[str]) -> set[str]:
        root = str(self.root) + "/"
        return {k for k in keys if not os.path.exists(root + k)}

    def put(self, key: str, data: bytes | memoryview) -> bool:
        final = self._path(key)
        if final.exists():
            return False
        parent = str(final.parent)
        if parent not in self._made_dirs:
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            # link() refuses to replace: a concurrent writer of the same key wins, harmlessly
            os.link(tmp, final)
            written = True
        except FileExistsError:
            written = False
        finally:
            tmp.unlink(missing_ok=True)
        self._dirty = self._dirty or written
        return written

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFoundError(
                f"object {key} is not in the store {self.root}", key
            ) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(
                f"object {key} is not in the store {self.root}", key
            ) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(
                f"object {key} is not in the store {self.root}", key
            ) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            if rel == "tmp" or rel.startswith("tmp/"):
                continue
            for name in sorted(files):
                yield name if rel == "." else f"{rel}/{name}"

    def sync(self) -> None:
        if self._dirty:
            _syncfs(self.root)
            self._dirty = False

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def clean_tmp(self) -> int:
        """Remove temp files left by interrupted writers (safe only when no writer runs)."""
        n = 0
        for p in self._tmp.iterdir():
            p.unlink(missing_ok=True)
            n += 1
        return n
