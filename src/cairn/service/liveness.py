"""What a store must keep: the one definition gc (`cairn gc`, the server's and the embedded
store's) and `cairn check` use.

An object is live when a live (not deleted) version's root tree reaches it, or when it is a
run's saved ``git diff``. Everything else may be collected once it is older than gc's grace
period.
"""

from __future__ import annotations

from cairn.service.registry import Registry

_PAGE = 500


def live_roots(registry: Registry) -> list[str]:
    """The root tree digest of every live version, in every project."""
    return registry.all_root_digests()


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
