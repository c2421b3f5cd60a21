"""`Artifact`: a draft you fill with files, then a logged, immutable version."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from cairn import config
from cairn.core import names
from cairn.core.gcpause import gc_relaxed
from cairn.core.records import HistoryEntry, LineageGraph, LinkInfo, VersionInfo
from cairn.errors import (
    ArtifactStateError,
    IntegrityError,
    InvalidInputError,
    InvalidNameError,
    InvalidPathError,
    NotFoundError,
    SourceFileError,
)
from cairn.objects import fswalk, tree
from cairn.objects.folders import Downloaded
from cairn.objects.hashcache import stat_key
from cairn.objects.ingest import IngestStats, StagedFile
from cairn.objects.materialize import Files, Wanted
from cairn.objects.tree import FileEntry
from cairn.sdk import context
from cairn.sdk.backend import Backend, get_backend
from cairn.sdk.log_version import Draft, Logged
from cairn.sdk.metadata import Metadata, loaded, to_metadata
from cairn.sdk.metadata import stored as stored_metadata
from cairn.sdk.progress import progress_bar
from cairn.sdk.walk import FolderSource, walk_files
from cairn.service.retention import ttl_seconds

if TYPE_CHECKING:
    from cairn.sdk.run import Run
    from cairn.service.registry import Direction


def _check_path(path: object) -> str:
    if isinstance(path, os.PathLike):
        path = Path(path).as_posix()
    return names.check_path(path)


def _added(source: str) -> tuple[int, int] | None:
    """(size, mtime) of a file being added, or None when it cannot be read (logging says so)."""
    try:
        st = os.stat(source)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _same_source(old: StagedFile | FileEntry, new: StagedFile) -> bool:
    """The same file on disk added again at the same path."""
    if not isinstance(old, StagedFile):
        return False
    if os.fspath(old.source) == os.fspath(new.source):
        return True
    try:
        return os.path.samefile(old.source, new.source)
    except OSError:
        return False


class ArtifactFile:
    """One file of a logged version."""

    def __init__(self, artifact: Artifact, path: str, entry: tree.Leaf) -> None:
        self.artifact = artifact
        self.path = path
        self.size: int = entry.size
        self.digest: str = entry.digest
        self.ref: str | None = entry.uri if isinstance(entry, tree.Ref) else None
        self._entry = entry

    def __repr__(self) -> str:
        return f"<ArtifactFile {self.path} {self.size} bytes>"

    @property
    def is_reference(self) -> bool:
        return isinstance(self._entry, tree.Ref)

    @property
    def extra(self) -> dict[str, Any]:
        """What was recorded to identify a reference's content at its source (``etag``,
        ``version``, ``blake3``, ``last_modified``); empty for a stored file."""
        return dict(self._entry.fields) if isinstance(self._entry, tree.Ref) else {}

    @property
    def etag(self) -> str | None:
        """A reference's ETag as recorded when it was added (S3, GCS, Azure, HTTP)."""
        value = self.extra.get("etag")
        return str(value) if value is not None else None

    @property
    def version_id(self) -> str | None:
        """A reference's object version (S3 version id, GCS generation, Azure version)."""
        value = self.extra.get("version")
        return str(value) if value is not None else None

    @property
    def content_hash(self) -> str | None:
        """``blake3:…`` of the content: a stored file's digest, a reference's when its content
        was hashed (``file://``, or a web server that gave no ETag); None otherwise."""
        if not self.is_reference:
            return self.digest or None
        value = self.extra.get("blake3")
        if value is None:
            return None
        return value if str(value).startswith("blake3:") else f"blake3:{value}"

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        copy: bool = False,
        allow_missing_references: bool = False,
        overwrite: bool = False,
    ) -> str:
        """Download this one file (a reference: from its source, checked); returns its path.
        A modified file in the way is only replaced with ``overwrite=True`` (see
        `Artifact.download`)."""
        dest = self.artifact._download_root(root)
        if isinstance(self._entry, tree.Ref):
            self.artifact._fetch_references(
                [(self.path, self._entry)], dest, allow_missing_references, overwrite
            )
        else:
            wanted = Wanted(self.path, self.digest, self.size, self._entry.chunks)
            self.artifact._materialize([wanted], dest, overwrite)
        return str(dest / self.path)


class Artifact:
    """A set of files versioned together.

    A new ``Artifact(name, type)`` is a draft: add files, then ``run.log_artifact(art)``. After
    logging (or when obtained from ``use_artifact``/``Api``) it is a version: its files are
    fixed; metadata, description, aliases and tags can still be edited and ``save()``d.
    """

    #: what the log that made (or found) this version hashed and stored; set by logging
    stats: IngestStats

    def __init__(
        self,
        name: str,
        type: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        incremental: bool = False,
    ) -> None:
        """``incremental=True`` starts the draft from the files of the artifact's latest
        version (in the current run's project, else the default project), to add, replace or
        remove a few without listing the rest; a new artifact starts empty."""
        self.name = names.check_artifact_name(name)
        self.type = names.check_type(type)
        self.description = description or ""
        self.metadata = metadata  # converted and copied by the setter
        self.aliases: list[str] = []
        self.tags: list[str] = []
        self.project: str | None = None
        self._entries = {}
        self._info: VersionInfo | None = None
        self._backend: Backend | None = None
        self._staging: Path | None = None
        self._open_files = 0
        if incremental:
            self._start_from_latest()

    def _start_from_latest(self) -> None:
        current = context.current()
        project = current.project if current is not None else None
        project = names.check_project(project or config.default_project() or "default")
        backend = get_backend()
        try:
            latest = backend.registry.resolve(project, self.name, "latest")
        except NotFoundError:
            return  # nothing logged yet: the first version is made from what is added
        if latest.type != self.type:
            raise InvalidNameError(
                f"artifact {project}/{self.name} has type {latest.type!r}, not {self.type!r}: "
                f"make the incremental draft with type={latest.type!r}"
            )
        base = artifact_at(latest, backend)
        self._entries.update(base.new_draft()._entries)
        self.project = project

    def _set_info(self, info: VersionInfo) -> None:
        self._info = info
        self.project = info.project
        self.description = info.description
        self._metadata = loaded(info.metadata)
        self.aliases = list(info.aliases)
        self.tags = list(info.tags)

    # --- metadata ----------------------------------------------------------------------------
    @property
    def metadata(self) -> Metadata:
        """A dict of JSON-like values (see `cairn.sdk.metadata`): converted and copied when
        set, so editing the dict you passed in changes nothing here, and a value JSON cannot
        hold is refused where it is set."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        self._metadata = to_metadata(value)

    # --- identity ----------------------------------------------------------------------------
    @property
    def is_draft(self) -> bool:
        return self._info is None

    def _logged(self) -> VersionInfo:
        if self._info is None:
            raise ArtifactStateError(
                f"artifact {self.name!r} has not been logged yet; call run.log_artifact(art) first"
            )
        return self._info

    @property
    def id(self) -> int:
        return self._logged().id

    @property
    def version(self) -> str:
        return self._logged().label

    @property
    def digest(self) -> str:
        return self._logged().digest

    @property
    def size(self) -> int:
        return self._logged().size

    @property
    def file_count(self) -> int:
        return self._logged().file_count

    @property
    def created_at(self) -> datetime:
        return self._logged().created_at

    @property
    def updated_at(self) -> datetime:
        """When the version last changed: logged, or its metadata, description, aliases or
        tags edited (the latest entry of its history)."""
        info = self._logged()
        times = [h.at for h in self._be().registry.history(info.id)]
        return max([info.created_at, *times])

    @property
    def qualified_name(self) -> str:
        return self._logged().qualified_name

    @property
    def state(self) -> str:
        return "draft" if self._info is None else self._info.state

    # --- retention ---------------------------------------------------------------------------
    #: a TTL set on a draft, applied when it is logged: (seconds,), 0 never, None inherit
    _ttl_pending: tuple[int | None] | None = None

    @property
    def ttl(self) -> timedelta | None:
        """How long the version lives, counted from its creation: its own TTL, else its
        artifact's or project's default (`cairn retention set`); None: it never expires.
        Once it has expired, `cairn retention apply` (or a server's schedule) deletes it, unless
        it holds an alias, is linked into a registry, or is protected by a policy."""
        if self._info is None:
            pending = self._ttl_pending[0] if self._ttl_pending else None
            return timedelta(seconds=pending) if pending else None
        found = self._be().retention.ttl(self._info.id)
        return None if found.ttl is None else timedelta(seconds=found.ttl)

    @ttl.setter
    def ttl(self, value: timedelta | Literal["inherit"] | None) -> None:
        """``timedelta(days=30)``; ``None``: never expires (whatever the defaults say);
        ``"inherit"``: the artifact's or project's default. On a logged version it takes effect
        at once (recorded in its history); on a draft, when it is logged."""
        seconds = None if isinstance(value, str) and value == "inherit" else ttl_seconds(value)
        if self._info is None:
            self._ttl_pending = (seconds,)
            return
        self._be().retention.set_ttl(self._info.id, seconds)

    @property
    def expires_at(self) -> datetime | None:
        """When the version's TTL runs out (None: never); it is deleted at the next retention
        evaluation after that."""
        return self._be().retention.ttl(self._logged().id).expires_at

    def __repr__(self) -> str:
        if self._info is None:
            return f"<Artifact {self.name} (draft, {draft_files(self)} files)>"
        return f"<Artifact {self._info.qualified_name} {self._info.digest[:19]}>"

    def _repr_html_(self) -> str:
        """Jupyter shows a card: name, digest, size, aliases, metadata, the first files."""
        from cairn.sdk.notebook import version_html

        return version_html(self)

    # --- filling a draft ---------------------------------------------------------------------
    def _draft_only(self) -> None:
        if self._info is not None:
            raise ArtifactStateError(
                f"{self._info.qualified_name} is logged and its files cannot change; "
                "call new_draft() to make a new version from it"
            )

    # A draft holds files one by one (``_files``) and whole folders added with add_dir that
    # are walked only when the version is logged (``_folders``): a folder of a million files
    # costs no memory per file until then, and logging streams it folder by folder. A folder
    # is expanded into single files only when another change touches a path inside it.
    @property
    def _entries(self) -> dict[str, StagedFile | FileEntry]:
        """Every file of the draft, one by one (folders added with add_dir expanded)."""
        while self._folders:
            self._expand(self._folders[0])
        return self._files

    @_entries.setter
    def _entries(self, value: dict[str, StagedFile | FileEntry]) -> None:
        self._files: dict[str, StagedFile | FileEntry] = value
        self._folders: list[FolderSource] = []

    def _expand(self, folder: FolderSource) -> None:
        self._folders.remove(folder)
        self._add_dir_now(Path(folder.root), folder.prefix, False, since=folder.added_ns)

    def _expand_overlapping(self, paths: Sequence[str]) -> None:
        """Expand the folders a change at any of ``paths`` could clash with."""
        for folder in list(self._folders):
            if any(folder.overlaps(p) for p in paths):
                self._expand(folder)

    def _put(self, path: str, value: StagedFile | FileEntry, overwrite: bool) -> None:
        if not overwrite and path in self._files:
            raise InvalidPathError(
                f"two files at one path: {path!r} is already in artifact {self.name!r}; "
                "pass overwrite=True to replace it or name= to put it elsewhere"
            )
        self._files[path] = value

    def _check_no_clashes(self, paths: list[str]) -> None:
        """Like _check_no_clash for many new paths at once, in time linear in their number."""
        files = set(self._files)
        folders = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
        for path in paths:
            if path in folders:
                raise InvalidPathError(f"{path!r} is already a folder in artifact {self.name!r}")
            parts = path.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in files:
                    raise InvalidPathError(
                        f"{path!r} would put a file inside {'/'.join(parts[:i])!r}, which is a file"
                    )

    def _check_no_clash(self, path: str) -> None:
        """A path may not be both a file and a folder."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._files:
                raise InvalidPathError(
                    f"{path!r} would put a file inside {'/'.join(parts[:i])!r}, which is a file"
                )
        prefix = path + "/"
        if any(p.startswith(prefix) for p in self._files):
            raise InvalidPathError(f"{path!r} is already a folder in artifact {self.name!r}")

    def add_file(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        *,
        overwrite: bool = False,
    ) -> ArtifactFile | None:
        """Add one file; ``name`` is its path inside the artifact (default: its file name)."""
        self._draft_only()
        source = Path(local_path)
        target = names.check_path(name if name is not None else source.name)
        try:
            st = source.stat()
        except FileNotFoundError:
            raise SourceFileError(
                f"file {source} does not exist; check the path", str(source)
            ) from None
        except OSError as exc:
            raise SourceFileError(f"cannot read {source}: {exc.strerror}", str(source)) from None
        if stat.S_ISDIR(st.st_mode):
            raise SourceFileError(f"{source} is a folder; use add_dir()", str(source))
        if not os.access(source, os.R_OK):
            raise SourceFileError(
                f"file {source} is not readable; fix its permissions", str(source)
            )
        staged = StagedFile(target, str(source.absolute()), (st.st_size, st.st_mtime_ns))
        self._expand_overlapping([target])
        if target not in self._files:
            self._check_no_clash(target)
        elif _same_source(self._files[target], staged):
            overwrite = True  # the same file again: nothing to decide (its size/mtime renewed)
        self._put(target, staged, overwrite)
        return None

    @gc_relaxed
    def add_dir(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        *,
        overwrite: bool = False,
    ) -> None:
        """Add every file below a folder, at ``name/`` inside the artifact (default: the root)."""
        self._draft_only()
        root = Path(local_path).absolute()
        prefix = names.check_path(name) + "/" if name else ""
        folder = FolderSource(prefix, str(root), 0)
        if not any(folder.overlaps(p) for p in self._files) and not any(
            f.overlaps(prefix[:-1]) for f in self._folders
        ):
            # nothing else in the draft at or below this folder: keep it as one folder,
            # checked now (every name, loops, unreadable folders) and read when it is logged
            self._folders.append(folder.counted())
            return
        self._expand_overlapping([prefix[:-1]] if prefix else [""])
        self._add_dir_now(root, prefix, overwrite)

    def _add_dir_now(
        self, root: Path, prefix: str, overwrite: bool, since: int | None = None
    ) -> None:
        found = [(names.check_path(prefix + rel), src) for rel, src in walk_files(root)]
        staged = {path: StagedFile(path, src, _added(src), since) for path, src in found}
        if not overwrite:
            clashes = [
                p
                for p, _ in found
                if p in self._files and not _same_source(self._files[p], staged[p])
            ]
            if clashes:
                raise InvalidPathError(
                    f"two files at one path: {clashes[0]!r} (and {len(clashes) - 1} more) already "
                    f"in artifact {self.name!r}; pass overwrite=True or name= to put them elsewhere"
                )
        if self._files:
            self._check_no_clashes([p for p, _ in found if p not in self._files])
        self._files.update(staged)

    def add_reference(
        self,
        uri: str,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
    ) -> None:
        """Track data that stays where it is: ``file://``, ``s3://``, ``gs://``, ``az://``,
        ``https://`` (any other scheme is tracked by its URI alone). A folder or prefix adds
        one entry per object below it, at ``name/<relative path>`` (at most ``max_objects``,
        default 10,000). What identifies each object (ETag, version, content hash …) is
        recorded, so the version changes when the data does and ``download()`` refuses data
        that changed since; ``checksum=False`` records the URI only. See
        `cairn.objects.references`."""
        from cairn.objects import references

        self._draft_only()
        found = references.resolve(uri, name, checksum=checksum, max_objects=max_objects)
        self._expand_overlapping([e.path for e in found])
        clashes = [e.path for e in found if e.path in self._files]
        if clashes:
            raise InvalidPathError(
                f"two files at one path: {clashes[0]!r} is already in artifact {self.name!r}; "
                "pass name= to put the reference elsewhere"
            )
        if self._files:
            self._check_no_clashes([e.path for e in found])
        for entry in found:
            self._files[entry.path] = entry

    @contextmanager
    def new_file(
        self, name: str, mode: str = "w", encoding: str | None = "utf-8"
    ) -> Iterator[IO[Any]]:
        """Write a new file straight into the artifact: ``with art.new_file("x.json") as f:``."""
        self._draft_only()
        path = names.check_path(name)
        self._expand_overlapping([path])
        if path in self._files:
            raise InvalidPathError(f"two files at one path: {path!r} is already in the artifact")
        self._check_no_clash(path)
        if mode not in ("w", "wb", "wt", "x", "xb", "xt"):
            raise InvalidInputError(
                f"new_file cannot open a file with mode {mode!r}: it writes a new file, use "
                "mode 'w' (text) or 'wb' (binary)"
            )
        if self._staging is None:
            base = config.cairn_dir() / "staging"
            base.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=base))
        local = self._staging / uuid.uuid4().hex
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with open(local, mode.replace("x", "w"), **kwargs) as f:
            yield f
        self._files[path] = StagedFile(path, str(local), _added(str(local)))

    def remove(self, item: str | os.PathLike[str] | ArtifactFile) -> None:
        """Remove a file, or every file under a folder, from the draft: a path inside the
        artifact (``str`` or ``pathlib`` path) or an entry from ``files()``."""
        self._draft_only()
        if isinstance(item, ArtifactFile):
            raw: object = item.path
        elif isinstance(item, os.PathLike):
            raw = Path(item).as_posix()
        else:
            raw = item
        path = names.check_path(raw)
        prefix = path + "/"
        self._expand_overlapping([path])
        doomed = [p for p in self._files if p == path or p.startswith(prefix)]
        if not doomed:
            raise InvalidPathError(f"{path!r} is not in artifact {self.name!r}; nothing removed")
        for p in doomed:
            del self._files[p]

    def new_draft(self) -> Artifact:
        """A draft holding this version's files (without downloading them), to change and log
        as a new version."""
        info = self._logged()
        draft = Artifact(info.name, info.type, info.description, loaded(info.metadata))
        draft.project = info.project
        for path, entry in self._iter_entries():
            draft._entries[path] = FileEntry.of(path, entry)
        return draft

    def _cleanup_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def wait(self, timeout: float | None = None) -> Artifact:
        """Logging is synchronous; kept so scripts written for asynchronous tools run as-is."""
        self._logged()
        return self

    # --- reading a version -------------------------------------------------------------------
    def _be(self) -> Backend:
        if self._backend is None:
            self._backend = get_backend()
        return self._backend

    def _load(self, digest: str) -> bytes:
        return self._be().object_store.get(digest)

    def _iter_entries(self, prefix: str | None = None) -> Iterator[tuple[str, tree.Leaf]]:
        info = self._logged()
        start = names.check_path(prefix) if prefix else None
        yield from tree.files_below(info.digest, start, self._load)

    def files(
        self, prefix: str | None = None, *, names: list[str] | None = None
    ) -> list[ArtifactFile]:
        """The files of a logged version, or of a draft (a file staged from disk has its
        current size and no digest until it is logged), below ``prefix`` when given; only
        those at the paths in ``names`` when given (a path that is not there is skipped)."""
        if names is not None:
            if isinstance(names, str):
                raise InvalidInputError("names is a list of paths, e.g. names=['a.csv']")
            wanted = [_check_path(n) for n in names]
            if self._info is None:
                return [f for f in self.files() if f.path in set(wanted)]
            out = []
            for path in dict.fromkeys(wanted):
                entry = tree.lookup(self._info.digest, path, self._load)
                if entry is not None and not isinstance(entry, tree.Dir):
                    out.append(ArtifactFile(self, path, entry))
            return sorted(out, key=lambda f: f.path)
        if self._info is None:
            folder = _check_path(prefix) if prefix else None
            out = []
            for p, v in sorted(self._entries.items()):
                if folder is not None and p != folder and not p.startswith(folder + "/"):
                    continue
                name = p.rsplit("/", 1)[-1]
                if isinstance(v, FileEntry):
                    out.append(ArtifactFile(self, p, v.leaf(name)))
                    continue
                try:
                    size = os.stat(v.source).st_size
                except OSError:
                    size = 0  # gone since it was added: logging will say so
                out.append(ArtifactFile(self, p, tree.File(name, "", size)))
            return out
        return list(self.iter_files(prefix))

    def iter_files(self, prefix: str | None = None) -> Iterator[ArtifactFile]:
        """The files of a logged version, below ``prefix`` when given, in path order, one at
        a time: a version of millions of files is walked in little memory (`files` makes the
        whole list)."""
        for path, entry in self._iter_entries(prefix):
            yield ArtifactFile(self, path, entry)

    def __getitem__(self, path: str) -> ArtifactFile:
        """``art["data/train.csv"]``: the entry at that path (`get_entry`)."""
        return self.get_entry(path)

    def get_entry(self, path: str) -> ArtifactFile:
        info = self._logged()
        path = names.check_path(path)
        entry = tree.lookup(info.digest, path, self._load)
        if entry is None or isinstance(entry, tree.Dir):
            raise NotFoundError(
                f"{info.qualified_name} has no file {path!r}; list them with art.files()"
            )
        return ArtifactFile(self, path, entry)

    def _download_root(self, root: str | os.PathLike[str] | None) -> Path:
        info = self._logged()
        if root is not None:
            return Path(root).expanduser().absolute()
        return config.artifact_dir() / f"{info.name}:{info.label}"

    @gc_relaxed
    def _materialize(
        self,
        wanted: Files,
        dest: Path,
        overwrite: bool,
        totals: tuple[int, int] | None = None,
        placed: Downloaded | None = None,
        stage: str | None = None,
        then: Callable[[Path], None] | None = None,
    ) -> None:
        if totals is None:
            assert isinstance(wanted, list)
            totals = (len(wanted), sum(w.size for w in wanted))
        with progress_bar(f"downloading {self.name}", *totals) as advance:
            materializer = self._be().materializer(advance)
            if placed is not None:
                placed.cache = materializer.hash_cache
                placed.progress = advance
            materializer.materialize(wanted, dest, overwrite=overwrite, stage=stage, then=then)
            if placed is not None:
                placed.remember()

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        path_prefix: str | None = None,
        copy: bool = False,
        allow_missing_references: bool = False,
        overwrite: bool = False,
    ) -> str:
        """Put the version's files in ``root`` (default ``$CAIRN_ARTIFACT_DIR/NAME:vN``, else
        ``./artifacts/NAME:vN``); returns its absolute path.

        Files are written as independent, writable copies (copied inside the kernel from the
        local store) and each is verified against its digest; files already in place with the
        right content are left alone. ``copy`` is accepted for compatibility; it is always True.

        Nothing outside ``root`` is ever written (symlinked sub-folders are not followed), and
        files are never left half-written under their own name. A ``root`` that does not exist
        yet appears only once complete; a download stopped half-way resumes on the next try
        (the files so far wait in a hidden folder beside it, ``.ROOT.cairn-download-*``). A
        file the user modified (its content differs from this version's and from what Cairn
        last wrote or read there) is not replaced: `DownloadConflictError` lists every such
        path, and the clashes (a folder where the version has a file, a file or symlink where it
        has a folder), before anything is written. ``overwrite=True`` replaces modified files,
        symlinks and empty folders in the way; a folder with content is never removed. Other
        files in ``root`` are left alone. References are fetched from their sources and checked
        against what was recorded: one that changed or vanished raises an error naming it
        (``allow_missing_references=True`` skips vanished ones with a warning).
        """
        dest = self._download_root(root)
        refs: list[tuple[str, tree.Ref]] = []
        walks = 0
        # a folder already holding exactly its files is skipped whole (objects/folders.py)
        placed = Downloaded(str(dest)) if not path_prefix else None

        def entries() -> Iterator[tuple[str, tree.Entry]]:
            if placed is None:
                yield from self._iter_entries(path_prefix)
                return
            placed.walk()
            for p, e in tree.iter_entries(self._logged().digest, self._load, prune=placed.in_place):
                placed.saw(p, e)
                yield p, e

        def files() -> Iterator[Wanted]:
            # the version's tree, walked folder by folder each time the download asks (once
            # to check what is in the way, once to write): never held whole
            nonlocal walks
            walks += 1
            first = walks == 1
            for p, e in entries():
                if isinstance(e, tree.Ref):
                    if first:
                        refs.append((p, e))
                elif isinstance(e, tree.File):
                    yield Wanted(p, e.digest, e.size, e.chunks)

        def fetch_references(folder: Path) -> None:  # into the hidden folder, if staged
            self._fetch_references(refs, folder, allow_missing_references, overwrite)

        # the same files under the same name: a stopped download into a new folder resumes
        stage = f"{self._logged().digest}\0{path_prefix or ''}"
        totals = self._totals(path_prefix)
        self._materialize(files, dest, overwrite, totals, placed, stage, fetch_references)
        return str(dest)

    def _totals(self, prefix: str | None) -> tuple[int, int]:
        """(files, bytes) at or below ``prefix``, from the tree (references included)."""
        info = self._logged()
        if not prefix:
            return info.file_count, info.size
        entry = tree.lookup(info.digest, names.check_path(prefix), self._load)
        if entry is None:
            return 0, 0
        return (entry.count if isinstance(entry, tree.Dir) else 1), entry.size

    @gc_relaxed
    def checkout(self, root: str | os.PathLike[str] | None = None) -> str:
        """Make ``root`` hold exactly this version: download it, and remove every file (and
        symlink) below ``root`` that is not in the version, then the folders left empty.
        Nothing outside ``root`` is touched: symlinks below it are removed, never followed.
        Returns the absolute path."""
        dest = self._download_root(root)
        keep: set[str] = set()
        folders: list[str] = []  # references recorded without a checksum may be folders
        for path, entry in self._iter_entries():
            keep.add(path)
            if isinstance(entry, tree.Ref) and not entry.fields:
                folders.append(path + "/")
        if dest.is_dir():
            self._remove_extra(dest, keep, tuple(folders))
        elif dest.exists() or dest.is_symlink():
            raise InvalidPathError(f"{dest} is not a folder; checkout() needs a folder")
        return self.download(dest, overwrite=True)

    @staticmethod
    def _remove_extra(dest: Path, keep: set[str], folders: tuple[str, ...]) -> None:
        wanted_dirs = {p.rsplit("/", i)[0] for p in keep for i in range(1, p.count("/") + 1)}
        for dirpath, dirnames, filenames in fswalk.walk(dest, topdown=False):
            base = Path(dirpath)
            rel_dir = os.path.relpath(dirpath, dest).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in filenames:
                rel = rel_dir + name
                if rel not in keep and not (folders and rel.startswith(folders)):
                    (base / name).unlink()
            for name in dirnames:
                sub = base / name
                rel = rel_dir + name
                if sub.is_symlink():  # the walk lists a symlinked folder here, never inside it
                    if rel not in keep:
                        sub.unlink()
                    continue
                inside = folders and (rel + "/").startswith(folders)
                if rel not in wanted_dirs and not inside and not any(sub.iterdir()):
                    sub.rmdir()

    def _fetch_references(
        self,
        refs: list[tuple[str, tree.Ref]],
        dest: Path,
        allow_missing: bool,
        overwrite: bool = False,
    ) -> None:
        if refs:
            from cairn.objects import references

            label = self._logged().qualified_name
            references.download(
                refs,
                dest,
                version=label,
                allow_missing=allow_missing,
                overwrite=overwrite,
                hash_cache=getattr(self._be(), "hash_cache", None),
            )

    def file(self, root: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> str:
        """Download a single-file artifact and return the file's path."""
        files = self.files()
        if len(files) != 1:
            raise ArtifactStateError(
                f"{self.qualified_name} has {len(files)} files; file() is for single-file "
                "artifacts, use download() instead"
            )
        return files[0].download(root, overwrite=overwrite)

    @gc_relaxed
    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Check that ``root`` holds exactly this version's files with the right content, and
        that referenced objects are unchanged at their sources (metadata only, nothing is
        downloaded); raise IntegrityError listing every difference."""
        from cairn.core.digest import new_hasher
        from cairn.objects import references

        dest = self._download_root(root)
        problems: list[str] = []
        seen: set[str] = set()
        refs: list[tuple[str, tree.Ref]] = []
        backend = self._be()
        cache = getattr(backend, "hash_cache", None)
        for path, entry in self._iter_entries():
            seen.add(path)
            local = dest / path
            if isinstance(entry, tree.Ref):
                refs.append((path, entry))
                problems += references.check_local(local, path, entry)
                continue
            try:
                st = local.stat()
            except OSError:
                problems.append(f"missing: {path}")
                continue
            if st.st_size != entry.size:
                problems.append(f"size differs: {path} ({st.st_size} != {entry.size})")
                continue
            hit = cache.get_many([stat_key(st)]).get(stat_key(st)) if cache else None
            if hit is not None:
                digest = hit.digest
            else:
                hasher = new_hasher(threaded=st.st_size >= 1 << 20)
                with open(local, "rb") as f:
                    while block := f.read(16 << 20):
                        hasher.update(block)
                digest = "blake3:" + hasher.hexdigest()
            if digest != entry.digest:
                problems.append(f"content differs: {path}")
        problems += references.check_sources(refs)
        folders = tuple(p + "/" for p, e in refs if not e.fields)  # unchecked: may be folders
        for dirpath, _dirs, filenames in fswalk.walk(dest):
            for fn in filenames:
                rel = os.path.relpath(os.path.join(dirpath, fn), dest).replace(os.sep, "/")
                if rel not in seen and not (folders and rel.startswith(folders)):
                    problems.append(f"not in the artifact: {rel}")
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            extra = any(p.startswith("not in the artifact: ") for p in problems)
            raise IntegrityError(
                f"{dest} does not match {self.qualified_name}:\n  {shown}{more}\n"
                "download() again to restore missing files (download(overwrite=True), "
                "`cairn artifact get --force`, to replace changed ones too)"
                + ("; remove the files that are not in the artifact yourself" if extra else ""),
                path=str(dest),
                digest=self.digest,
            )

    # --- editing a version -------------------------------------------------------------------
    def save(self) -> Artifact:
        """Persist changes to metadata, description, aliases and tags (each change goes into
        the version's history). On a draft: log it, in the current run, or in a run of its
        own (job type "auto") when there is none."""
        if self._info is None:
            current = context.current()  # only ever a run this process started
            if current is not None and current.state == "running":
                current.log_artifact(self)
            else:
                with context.start_run(self.project, "auto") as own:
                    own.log_artifact(self)
            return self
        info = self._logged()
        current = context.current()
        aliases = list(dict.fromkeys(self.aliases))
        if "latest" in aliases and "latest" in info.aliases:
            aliases.remove("latest")  # computed by Cairn: kept by the newest version
        for a in aliases:
            names.check_alias(a)  # refuses 'latest' put on an older version, and 'vN'
        tags = list(dict.fromkeys(self.tags))
        for t in tags:
            names.check_tag(t)
        metadata = stored_metadata(self.metadata)
        old_aliases = [a for a in info.aliases if a != "latest"]
        new = self._be().registry.update_version(
            info.id,
            description=self.description if self.description != info.description else None,
            metadata=metadata if metadata != info.metadata else None,
            aliases=aliases if aliases != old_aliases else None,
            tags=tags if tags != info.tags else None,
            run_id=current.id if current else None,
        )
        self._set_info(new)
        return self

    def delete(self, delete_aliases: bool = False) -> None:
        """Delete this version (its number is not reused). Refuses a version with aliases
        unless ``delete_aliases=True``."""
        info = self._logged()
        current = context.current()
        self._be().registry.delete_version(
            info.id, force=delete_aliases, run_id=current.id if current else None
        )
        self._set_info(self._be().registry.get_version(info.id))

    # --- lineage and history -----------------------------------------------------------------
    def logged_by(self) -> Run | None:
        info = self._be().registry.logged_by(self._logged().id)
        return context.run_view(info, self._be()) if info else None

    def used_by(self) -> list[Run]:
        runs = self._be().registry.used_by(self._logged().id)
        return [context.run_view(r, self._be()) for r in runs]

    def history(self) -> list[HistoryEntry]:
        return self._be().registry.history(self._logged().id)

    def lineage(self, direction: Direction = "both", depth: int | None = None) -> LineageGraph:
        return self._be().registry.lineage(self._logged().id, direction=direction, depth=depth)

    # --- registries ----------------------------------------------------------------------------
    def link(
        self, target: str, aliases: Sequence[str] | None = None, *, run: Run | None = None
    ) -> LinkInfo:
        """Link this version into a registry's collection (``"models/classifier"``, created on
        first link) without copying bytes; ``aliases`` move to it within the collection.
        Returns the collection version (``link.version`` is its number there)."""
        from cairn.sdk import run as run_module
        from cairn.sdk.resolve import split_collection

        registry, collection = split_collection(target)
        if isinstance(aliases, str):
            raise InvalidInputError("aliases is a list, e.g. aliases=['staging']")
        acting = run if run is not None else run_module.current_run()
        run_id = acting.id if acting is not None and acting._active else None
        return self._be().registry.link_version(
            registry, collection, self._logged().id, aliases=list(aliases or []), run_id=run_id
        )

    def links(self) -> list[LinkInfo]:
        """Where this version is linked (registry, collection, number, aliases)."""
        return self._be().registry.links_of(self._logged().id)


# --- what the rest of the SDK asks of an artifact (Run, Api) ---------------------------------


def artifact_at(info: VersionInfo, backend: Backend) -> Artifact:
    """The `Artifact` of a stored version."""
    art = Artifact.__new__(Artifact)
    art.name = info.name
    art.type = info.type
    art.project = info.project
    art._entries = {}
    art._staging = None
    art._open_files = 0
    art._backend = backend
    art._set_info(info)
    return art


def logged_info(artifact: Artifact) -> VersionInfo:
    """The stored version of `artifact`; ArtifactStateError for a draft."""
    return artifact._logged()


def draft_of(artifact: Artifact) -> Draft:
    """What `log_version` needs of a draft; ArtifactStateError for a logged version."""
    artifact._draft_only()
    return Draft(
        name=artifact.name,
        type=artifact.type,
        description=artifact.description,
        metadata=artifact.metadata,
        aliases=list(artifact.aliases),
        tags=list(artifact.tags),
        entries=list(artifact._files.values()),
        folders=list(artifact._folders),
    )


def draft_files(artifact: Artifact) -> int:
    """How many files a draft holds (its folders as counted when they were added)."""
    return len(artifact._files) + sum(f.files for f in artifact._folders)


def mark_logged(artifact: Artifact, logged: Logged, backend: Backend) -> None:
    """Turn the draft `artifact` into the version `log_version` made or found."""
    artifact._backend = backend
    artifact._entries = {}
    artifact._cleanup_staging()
    artifact._set_info(logged.info)
    artifact.stats = logged.stats
    if artifact._ttl_pending is not None:
        backend.retention.set_ttl(logged.info.id, artifact._ttl_pending[0])
        artifact._ttl_pending = None


__all__ = [
    "Artifact",
    "ArtifactFile",
    "artifact_at",
    "draft_files",
    "draft_of",
    "logged_info",
    "mark_logged",
]
