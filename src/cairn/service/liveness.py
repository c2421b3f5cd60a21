"""What a store must keep: the one definition gc (`cairn gc`, the server's and the embedded
store's) and `cairn check` use.

An object is live when a live (not deleted) version's root tree reaches it, when it is a
run's saved ``git diff``, or when a pending part of a distributed version reaches it (until the
part is finished, or abandoned: not upserted for longer than gc's grace period, when gc removes
it, `expire_parts`). Everything else may be collected once it is older than gc's grace period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn.service.registry import Registry

if TYPE_CHECKING:
    from cairn.service.sql.parts import SqlParts

_PAGE = 500


def live_roots(registry: Registry) -> list[str]:
    """The root tree digest of every live version, in every project, and of every pending
    part of a distributed version (gc runs where the database is: a `SqlRegistry`)."""
    roots = registry.all_root_digests()
    parts = _parts(registry)
    if parts is not None:
        roots = sorted(set(roots).union(parts.pending_roots()))
    return roots


def _parts(registry: Registry) -> SqlParts | None:
    from cairn.service.sql import SqlRegistry
    from cairn.service.sql.parts import SqlParts

    return SqlParts(registry) if isinstance(registry, SqlRegistry) else None


def expire_parts(registry: Registry, grace_seconds: float, *, dry_run: bool = False) -> int:
    """Remove the parts of distributed versions nobody upserted for ``grace_seconds`` (never
    finished: their workers or finisher died), as gc removes abandoned uploads; their objects
    are then no longer live. Returns how many parts (would be) removed."""
    parts = _parts(registry)
    return 0 if parts is None else parts.expire(grace_seconds, dry_run=dry_run)


def live_diffs(registry: Registry) -> list[str]:
    """The digests of every run's saved ``git diff``, in every project, sorted."""
    diffs: set[str] = set()
    for project in registry.list_projects():
        offset = 0
        while True:
            runs = registry.list_runs(project.name, limit=_PAGE, offset=offset)
            diffs.update(r.git_diff_digest for r in runs if r.git_diff_digest)
            if len(runs) < _PAGE:
                break
            offset += len(runs)
    return sorted(diffs)


def live_objects(registry: Registry) -> tuple[list[str], list[str]]:
    """(roots of every live version, run diff objects): what gc's mark phase starts from."""
    return live_roots(registry), live_diffs(registry)
