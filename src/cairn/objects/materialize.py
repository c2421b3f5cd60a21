"""Downloads: write a version's files into a folder from the object store, verified.

Each file is written to a temp name beside its target (small files from their one object,
chunked files chunk by chunk, copied inside the kernel where the store is local), hashed, and
renamed into place; a file that does not match its digest is never left behind. A file already in
place whose (device, inode, size, mtime) the hash cache knows with the right digest is left
alone, so a second download of the same version only stats each file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cairn.core.digest import new_hasher
from cairn.core.names import check_path
from cairn.errors import IntegrityError, InvalidPathError
from cairn.objects import chunking
from cairn.objects.hashcache import CachedDigest, HashCache, StatKey, stat_key
from cairn.objects.odb import ObjectStore

ProgressFn = Callable[[int, int], None]
_GROUP = 32  # files placed per task


@dataclass(frozen=True)
class Wanted:
    path: str  # inside the artifact
    digest: str
    size: int
    chunks: str | None


class Materializer:
    def __init__(
        self,
        odb: ObjectStore,
        hash_cache: HashCache | None,
        *,
        threads: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.odb = odb
        self.hash_cache = hash_cache
        # creating files is kernel-bound; more threads than cores only contend
        self.threads = threads or (os.cpu_count() or 2)
        self.progress = progress or (lambda files, nbytes: None)
        self._placed: list[tuple[StatKey, CachedDigest]] = []

    def materialize(self, wanted: list[Wanted], dest: Path) -> None:
        for w in wanted:
            # paths come from tree objects, which anyone able to write objects can craft: never
            # let one name a place outside ``dest`` ('../x', '/etc/x')
            if check_path(w.path) != w.path:
                raise InvalidPathError(f"artifact path {w.path!r} is not in normal form ('a/b')")
        dest.mkdir(parents=True, exist_ok=True)
        known = self._already_in_place(wanted, dest)
        todo = [w for w in wanted if w.path not in known]
        for w in wanted:
            if w.path in known:
                self.progress(1, w.size)
        for parent in sorted({os.path.dirname(w.path) for w in todo}):
            if parent:
                (dest / parent).mkdir(parents=True, exist_ok=True)
        warm = getattr(self.odb, "warm", None)
        if warm is not None:  # look every object up in one pass, not one query per file
            warm([w.chunks or w.digest for w in todo])
        root = str(dest) + "/"
        # a few dozen files per task: a Future per file costs more Python time than placing
        # a small file does, and that time holds the GIL
        groups = [todo[i : i + _GROUP] for i in range(0, len(todo), _GROUP)]
        try:
            with ThreadPoolExecutor(self.threads) as pool:
                for _ in pool.map(lambda group: self._place_group(group, root), groups):
                    pass
        finally:
            if self.hash_cache and self._placed:
                self.hash_cache.put_many(self._placed, racy_ok=True)
            self._placed = []

    def _already_in_place(self, wanted: list[Wanted], dest: Path) -> set[str]:
        if not self.hash_cache:
            return set()
        stats: dict[str, StatKey] = {}
        root = str(dest) + "/"
        for w in wanted:
            try:
                stats[w.path] = stat_key(os.stat(root + w.path))
            except OSError:
                continue
        cached = self.hash_cache.get_many(list(stats.values()))
        digests = {w.path: w.digest for w in wanted}
        return {
            path
            for path, key in stats.items()
            if (hit := cached.get(key)) is not None and hit.digest == digests[path]
        }

    def _place_group(self, group: list[Wanted], root: str) -> None:
        for w in group:
            self._place(w, root)

    def _place(self, w: Wanted, root: str) -> None:
        target = root + w.path
        # a new file is written in place (a crash leaves a file the hash cache does not know,
        # which the next download rewrites); an existing one is replaced atomically
        try:
            tmp = target
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            folder, name = os.path.split(target)
            tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.cairn-tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if w.chunks is None:
                written = self.odb.read_into(w.digest, fd, 0)
            else:
                written = 0
                for digest, _n in chunking.decode_chunk_list(self.odb.get(w.chunks)):
                    n = self.odb.read_into(digest, fd, written)
                    written += n
                    self.progress(0, n)  # a large file's bar moves as its chunks land
            digest = _hash_fd(fd, w.size)
            if written != w.size or digest != w.digest:
                raise IntegrityError(
                    f"stored content of {w.path} is corrupt (expected {w.digest}, found "
                    f"{digest}); log the data again to repair the store",
                    path=w.path,
                    digest=w.digest,
                )
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        if tmp != target:
            os.replace(tmp, target)
        self._placed.append((stat_key(st), CachedDigest(w.digest, w.chunks)))
        self.progress(1, w.size if w.chunks is None else 0)


def _hash_fd(fd: int, size: int) -> str:
    """The digest of the first ``size`` bytes of ``fd`` (the file was created empty and
    exactly ``size`` bytes were written to it; a short read only makes the digest differ)."""
    hasher = new_hasher(threaded=size >= chunking.CHUNK_THRESHOLD)
    offset = 0
    while offset < size:
        block = os.pread(fd, min(size - offset, 16 << 20), offset)
        if not block:
            break
        hasher.update(block)
        offset += len(block)
    return "blake3:" + hasher.hexdigest()
