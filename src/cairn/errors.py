"""Every exception Cairn raises on purpose.

    CairnError
    ├── InvalidInputError            bad names, paths, metadata, arguments (nothing was changed)
    │   ├── InvalidNameError         artifact/project name, type, alias or tag
    │   ├── InvalidPathError         absolute path, `..`, empty segment, two files at one path
    │   └── InvalidMetadataError     metadata or config that is not JSON
    ├── NotFoundError                something named does not exist
    │   ├── ProjectNotFoundError
    │   ├── ArtifactNotFoundError    unknown artifact, version or alias
    │   ├── RunNotFoundError
    │   └── ObjectNotFoundError      a stored object is missing (store damaged or collected)
    ├── SourceFileError              a user's file is missing, unreadable, a symlink loop ...
    │   └── FileChangedError         a file changed while Cairn was reading it
    ├── IntegrityError               stored or downloaded bytes do not match their digest
    ├── StateError                   the operation does not fit the object's state
    │   ├── RunFinishedError         logging to a finished run
    │   └── ArtifactStateError       editing a logged version's files, saving a draft ...
    ├── ConflictError                a concurrent writer won; retry
    ├── PermissionDeniedError        the key or user may not do this
    └── StoreError                   the store or database cannot be used (schema, storage I/O)

Every message says what went wrong and what to do next.
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


class InvalidMetadataError(InvalidInputError):
    code = "invalid_metadata"


class NotFoundError(CairnError, LookupError):
    code = "not_found"


class ProjectNotFoundError(NotFoundError):
    code = "project_not_found"


class ArtifactNotFoundError(NotFoundError):
    code = "artifact_not_found"


class RunNotFoundError(NotFoundError):
    code = "run_not_found"


class ObjectNotFoundError(NotFoundError):
    code = "object_not_found"

    def __init__(self, message: str, digest: str = "") -> None:
        super().__init__(message)
        self.digest = digest


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


class StateError(CairnError):
    code = "invalid_state"


class RunFinishedError(StateError):
    code = "run_finished"


class ArtifactStateError(StateError):
    code = "artifact_state"


class ConflictError(CairnError):
    code = "conflict"


class PermissionDeniedError(CairnError, PermissionError):
    code = "permission_denied"


class StoreError(CairnError):
    code = "store"
