"""Local-disk backend: one file per key, written to a temp file and linked into place."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cairn.errors import ObjectNotFoundError, StoreError
from cairn.storage.base import Signer

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (Linux syncfs), else everything (sync)."""
    call = getattr(_libc, "syncfs", None)
    if call is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if call(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class LocalStorage:
    signer: Signer | None = None

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
        # a folder is not a key: 'a' does not exist because 'a/b' does
        return os.path.isfile(self.root / key)

    def missing(self, keys: Iterable[str]) -> set[str]:
        root = str(self.root) + "/"
        return {k for k in keys if not os.path.isfile(root + k)}

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key} is not in the store {self.root}", key)

    def put(self, key: str, data: bytes | memoryview) -> bool:
        def write(fd: int) -> None:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]

        return self._write(key, write)

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        def copy(out: int) -> None:
            # in-kernel copy: several times faster than write() of the bytes already read
            done = 0
            while done < length:
                try:
                    n = os.copy_file_range(fd, out, length - done, offset + done)
                except OSError:
                    n = 0
                if n == 0:
                    data = os.pread(fd, length - done, offset + done)
                    if not data:
                        raise EOFError(f"source ended before {length} bytes")
                    n = os.write(out, data)
                done += n

        return self._write(key, copy)

    def _write(self, key: str, fill: Callable[[int], None]) -> bool:
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
            fill(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            try:
                # link() refuses to replace: a concurrent writer of the same key wins, harmlessly
                os.link(tmp, final)
            except FileNotFoundError:
                # the folder was removed since we made it (an emptied store): make it again
                os.makedirs(parent, exist_ok=True)
                os.link(tmp, final)
            written = True
        except FileExistsError:
            written = False
        finally:
            tmp.unlink(missing_ok=True)
        if written:
            self._dirty = True
        return written

    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        with self.open(key) as f:
            f.seek(offset)
            return f.read(length)

    def iter_bytes(self, key: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        with self.open(key) as f:
            while piece := f.read(chunk):
                yield piece

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None

    def size(self, key: str) -> int:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(key)
        return st.st_size

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        # walk only the folders that can hold matching keys, in key order: a folder 'a' sorts
        # as 'a/' so that 'a/b' comes before 'a0', as in a plain sort of the keys
        folder, _, _ = prefix.rpartition("/")
        yield from self._list_in(folder + "/" if folder else "", prefix)

    def _list_in(self, rel: str, prefix: str) -> Iterator[str]:
        try:
            with os.scandir(self.root / rel if rel else self.root) as it:
                found = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in sorted(found):
            key = rel + name
            if name.endswith("/"):
                if (not rel and name == "tmp/") or not (
                    key.startswith(prefix) or prefix.startswith(key)
                ):
                    continue  # the store's own temp folder, or no key below can match
                yield from self._list_in(key, prefix)
            elif key.startswith(prefix):
                yield key

    def list_info(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            yield key, st.st_size, st.st_mtime

    def copy(self, src: str, dst: str) -> None:
        data = self.get(src)
        self.delete(dst)
        self.put(dst, data)

    def sync(self) -> None:
        if self._dirty:
            # clear first: a put that completes while syncfs runs marks the store dirty again
            self._dirty = False
            try:
                syncfs(self.root)
            except BaseException:
                self._dirty = True
                raise

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def clean_tmp(self) -> int:
        """Remove temp files left by interrupted writers (safe only when no writer runs)."""
        n = 0
        for p in self._tmp.iterdir():
            p.unlink(missing_ok=True)
            n += 1
        return n
