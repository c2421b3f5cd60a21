"""Every exception Cairn raises on purpose.

    CairnError
    ├── InvalidInputError            bad names, paths, metadata, arguments (nothing was changed)
    │   ├── InvalidNameError         artifact/project name, type, alias or tag
    │   ├── InvalidPathError         absolute path, `..`, empty segment, two files at one path
    │   │   └── PartConflictError    two parts of a distributed version differ at one path
    │   ├── InvalidMetadataError     metadata or config that is not JSON
    │   ├── TooManyObjectsError      a reference prefix lists more objects than allowed
    │   ├── PayloadTooLargeError     a request body or object the server will not take (413)
    │   │   └── QuotaExceededError   an upload would take a user past their quota (413)
    │   └── ValidationError          a request that does not match the API's schema (422)
    ├── NotFoundError                something named does not exist
    │   ├── ProjectNotFoundError
    │   ├── ArtifactNotFoundError    unknown artifact, version or alias
    │   ├── RunNotFoundError
    │   ├── RegistryNotFoundError    unknown registry (or one the caller may not see)
    │   ├── ObjectNotFoundError      a stored object is missing (store damaged or collected)
    │   └── ReferenceMissingError    a referenced object (or prefix) is gone at its source
    ├── SourceFileError              a user's file is missing, unreadable, a symlink loop ...
    │   └── FileChangedError         a file changed while Cairn was reading it
    ├── IntegrityError               stored or downloaded bytes do not match their digest
    │   └── ReferenceChangedError    a referenced object is no longer what the version recorded
    ├── StateError                   the operation does not fit the object's state
    │   ├── RunFinishedError         logging to a finished run
    │   ├── ArtifactStateError       editing a logged version's files, saving a draft ...
    │   ├── MissingPartsError        finishing a distributed version before its parts arrived
    │   └── DownloadConflictError    a download would replace a modified file, or a clash
    ├── ConflictError                a concurrent writer won; retry
    ├── PermissionDeniedError        the key or user may not do this
    │   ├── AuthenticationError      no API key, or one the server does not know (401)
    │   └── RateLimitedError         too many failed keys or sign-ins from one address (429)
    ├── StoreError                   the store or database cannot be used (schema, storage I/O)
    ├── MissingDependencyError       an optional dependency (NumPy for the demo) is not installed
    ├── DiskFullError                no space left where Cairn was writing (nothing partial kept)
    └── UnsupportedError             another tool's feature Cairn does not have (cairn.wandb)


    │   └── UnavailableError         the server cannot reach its database now; retry (503)
    └── MissingDependencyError       an optional dependency (NumPy for the demo) is not installed

Every message says what went wrong and what to do next. Every class has its own ``code``
(the server's JSON error shape carries it, `cairn.wire`), and `error_class` maps a code back to
its class: every class is defined here, so the mapping never depends on what was imported.
"""

from __future__ import annotations


class CairnError(Exception):
    """Base class of every error Cairn raises on purpose."""

    #: short machine-readable code, also used in the server's JSON error shape
    code = "error"


class InvalidInputError(CairnError, ValueError):
    code = "invalid_input"


class InvalidNameError(InvalidInputError):
    code = "invalid_name"


class InvalidPathError(InvalidInputError):
    code = "invalid_path"


class PartConflictError(InvalidPathError):
    """Two parts of a distributed version put different content at one path (or a file where
    another has a folder). ``path``: that path; ``parts``: the part ids involved."""

    code = "part_conflict"

    def __init__(self, message: str, path: str = "", parts: list[str] | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.parts = list(parts or [])


class InvalidMetadataError(InvalidInputError):
    code = "invalid_metadata"


class TooManyObjectsError(InvalidInputError):
    """A reference prefix lists more objects than ``max_objects`` allows."""

    code = "too_many_objects"


class PayloadTooLargeError(InvalidInputError):
    """A request body or an object is larger than the server accepts: HTTP 413."""

    code = "too_large"


class QuotaExceededError(PayloadTooLargeError):
    """An upload would take a user past their upload quota: HTTP 413."""

    code = "quota_exceeded"


class ValidationError(InvalidInputError):
    """A request that does not match the API's schema (wrong field or type): HTTP 422."""

    code = "validation"


class NotFoundError(CairnError, LookupError):
    code = "not_found"


class ProjectNotFoundError(NotFoundError):
    code = "project_not_found"


class ArtifactNotFoundError(NotFoundError):
    code = "artifact_not_found"


class RunNotFoundError(NotFoundError):
    code = "run_not_found"


class RegistryNotFoundError(NotFoundError):
    code = "registry_not_found"


class ObjectNotFoundError(NotFoundError):
    code = "object_not_found"

    def __init__(self, message: str, digest: str = "") -> None:
        super().__init__(message)
        self.digest = digest


class ReferenceMissingError(NotFoundError):
    """A referenced object (or everything under a referenced prefix) is gone."""

    code = "reference_missing"


class SourceFileError(CairnError, OSError):
    code = "source_file"

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FileChangedError(SourceFileError):
    code = "file_changed"


class IntegrityError(CairnError):
    code = "integrity"

    def __init__(self, message: str, path: str = "", digest: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.digest = digest


class ReferenceChangedError(IntegrityError):
    """A referenced object is no longer what the version recorded."""

    code = "reference_changed"


class StateError(CairnError):
    code = "invalid_state"


class RunFinishedError(StateError):
    code = "run_finished"


class ArtifactStateError(StateError):
    code = "artifact_state"


class MissingPartsError(StateError):
    """``finish_artifact(expected_parts=...)`` found parts that never arrived (a worker died):
    nothing was committed. ``missing`` and ``arrived`` are part ids."""

    code = "missing_parts"

    def __init__(
        self, message: str, missing: list[str] | None = None, arrived: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.arrived = list(arrived or [])


class DownloadConflictError(StateError):
    """A download would replace files the user modified, write through a symlink, or finds a
    folder where the version has a file (or the reverse). ``conflicts`` lists (path, kind)."""

    code = "download_conflict"

    def __init__(self, message: str, conflicts: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts or [])


class ConflictError(CairnError):
    code = "conflict"


class PermissionDeniedError(CairnError, PermissionError):
    code = "permission_denied"


class AuthenticationError(PermissionDeniedError):
    """No API key, or one the server does not know (mistyped or revoked): HTTP 401."""

    code = "unauthenticated"


class RateLimitedError(PermissionDeniedError):
    """Too many failed keys or sign-ins from one address: HTTP 429 (with ``Retry-After``)."""

    code = "rate_limited"


class StoreError(CairnError):
    code = "store"


class DiskFullError(CairnError, OSError):
    """No space left on the filesystem Cairn was writing to; nothing partial was kept."""

    code = "disk_full"

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnavailableError(StoreError):
    """The server cannot reach its database right now: HTTP 503 (retry in a moment)."""

    code = "unavailable"


class MissingDependencyError(CairnError):
    """An optional dependency (NumPy for the demo) is not installed."""

    code = "missing_dependency"


class UnsupportedError(CairnError, NotImplementedError):
    """A feature of another tool Cairn does not have (`cairn.wandb`: media types, Tables,
    sweeps, the hosted UI …)."""

    code = "unsupported"


def _tree(cls: type[CairnError]) -> list[type[CairnError]]:
    return [cls] + [sub for direct in cls.__subclasses__() for sub in _tree(direct)]


#: every error class by its code; built once, when only the classes above exist
_BY_CODE: dict[str, type[CairnError]] = {cls.code: cls for cls in _tree(CairnError)}


def error_class(code: str) -> type[CairnError] | None:
    """The class whose ``code`` is `code` (None for a code this version does not know)."""
    return _BY_CODE.get(code)
