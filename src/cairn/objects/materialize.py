"""Downloads: put a version's files in a folder, from the local content cache.

Small files are objects already; a chunked file is assembled once into the file cache. Files
are then hard-linked (read-only, no extra disk) or copied (writable) into place. A file already
in place whose (device, inode, size, mtime) the hash cache knows with the right digest is left
alone, so a second download of the same version only stats each file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cairn.core.digest import hash_bytes, new_hasher
from cairn.errors import IntegrityError
from cairn.objects import chunking
from cairn.objects.hashcache import CachedDigest, HashCache, stat_key
from cairn.objects.odb import ObjectDB
from cairn.storage.local import LocalStorage

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Wanted:
    path: str  # inside the artifact
    digest: str
    size: int
    chunks: str | None


class Materializer:
    def __init__(
        self,
        odb: ObjectDB,
        files_cache: LocalStorage,
        hash_cache: HashCache | None,
        *,
        threads: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.odb = odb
        self.files = ObjectDB(files_cache)  # assembled chunked files, by whole-file digest
        self.hash_cache = hash_cache
        self.threads = threads or min(8, (os.cpu_count() or 2) * 2)
        self.progress = progress or (lambda files, nbytes: None)
        self._placed: list[tuple[tuple[int, int, int, int], CachedDigest]] = []

    def materialize(self, wanted: list[Wanted], dest: Path, *, copy: bool = False) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        known = self._already_in_place(wanted, dest)
        todo = [w for w in wanted if w.path not in known]
        for w in wanted:
            if w.path in known:
                self.progress(1, w.size)
        for parent in {os.path.dirname(w.path) for w in todo}:
            if parent:
                (dest / parent).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda w: self._place(w, dest, copy), todo))
        if self.hash_cache:
            self.hash_cache.put_many(self._placed)
        self._placed = []

    def _already_in_place(self, wanted: list[Wanted], dest: Path) -> set[str]:
        if not self.hash_cache:
            return set()
        stats = {}
        for w in wanted:
            try:
                st = os.stat(dest / w.path)
            except OSError:
                continue
            stats[w.path] = stat_key(st)
        cached = self.hash_cache.get_many(list(stats.values()))
        return {
            w.path
            for w in wanted
            if (hit := cached.get(stats.get(w.path, (0, 0, 0, 0)))) and hit.digest == w.digest
        }

    def local_file(self, w: Wanted) -> Path:
        """A verified local file holding the content of ``w``."""
        if w.chunks is None:
            path = self.odb.local_path(w.digest)
            if path is not None and path.exists():
                return path
            # remote store: fetch the object into the files cache
            data = self.odb.get(w.digest)
            self.files.put(w.digest, data)
        else:
            path = self.files.local_path(w.digest)
            if path is not None and path.exists():
                return path
            self._assemble(w)
        result = self.files.local_path(w.digest)
        assert result is not None
        return result

    def _assemble(self, w: Wanted) -> None:
        assert w.chunks is not None
        chunk_list = chunking.decode_chunk_list(self.odb.get(w.chunks))
        hasher = new_hasher(threaded=True)
        parts = []
        for digest, _n in chunk_list:
            data = self.odb.get(digest, verify=True)
            hasher.update(data)
            parts.append(data)
            if len(parts) >= 32:
                self._spill(w, parts)
                parts = []
        self._spill(w, parts)
        self._finish_spill(w, "blake3:" + hasher.hexdigest())

    def _spill(self, w: Wanted, parts: list[bytes]) -> None:
        tmp = self._spill_path(w)
        with open(tmp, "ab") as f:
            for p in parts:
                f.write(p)

    def _spill_path(self, w: Wanted) -> Path:
        files_root = self.files.storage.local_path("tmp")
        assert files_root is not None
        return files_root / ("assemble-" + w.digest.partition(":")[2])

    def _finish_spill(self, w: Wanted, digest: str) -> None:
        tmp = self._spill_path(w)
        if digest != w.digest:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(
                f"file {w.path} reassembled to {digest}, expected {w.digest}; the store is "
                "damaged, run `cairn verify`",
                path=w.path,
                digest=w.digest,
            )
        final = self.files.local_path(w.digest)
        assert final is not None
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)

    def _place(self, w: Wanted, dest: Path, copy: bool) -> None:
        src = self.local_file(w)
        target = dest / w.path
        if not copy:
            src_st = os.stat(src)
            if not self._verified(src_st, w.digest):
                self._verify_file(src, w)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.cairn-tmp")
            try:
                os.link(src, tmp)
                os.replace(tmp, target)
                self._note(src_st, w.digest)
                self.progress(1, w.size)
                return
            except OSError:
                tmp.unlink(missing_ok=True)  # another filesystem: fall back to a copy
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.cairn-tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        self._verify_file(tmp, w)
        os.replace(tmp, target)
        self._note(os.stat(target), w.digest)
        self.progress(1, w.size)

    def _verified(self, st: os.stat_result, digest: str) -> bool:
        if not self.hash_cache:
            return False
        hit = self.hash_cache.get_many([stat_key(st)]).get(stat_key(st))
        return hit is not None and hit.digest == digest

    def _verify_file(self, path: Path, w: Wanted) -> None:
        with open(path, "rb") as f:
            if w.size >= chunking.CHUNK_THRESHOLD:
                hasher = new_hasher(threaded=True)
                while block := f.read(16 << 20):
                    hasher.update(block)
                digest = "blake3:" + hasher.hexdigest()
            else:
                digest = hash_bytes(f.read())
        if digest != w.digest:
            if path.name.endswith(".cairn-tmp"):
                path.unlink(missing_ok=True)
            raise IntegrityError(
                f"stored content of {w.path} is corrupt (expected {w.digest}, found {digest}); "
                "run `cairn verify` and re-log the data",
                path=w.path,
                digest=w.digest,
            )

    def _note(self, st: os.stat_result, digest: str) -> None:
        self._placed.append((stat_key(st), CachedDigest(digest, None)))
