"""Serving a store that was written without a server.

The server lets a user read an object only when a project they may read holds it
(``project_objects``), and it records what each project holds when versions are committed
through it. Versions logged in embedded mode, before the team ran `cairn server` over the
same folder and database, were committed without that record: at start the server walks
those versions once and binds their objects to their projects, so that members who are not
administrators can download them. (Runs' code diffs are not bound this way: only an
administrator sees the diff of a run logged before the server.) Likewise, versions linked into
a registry before registries held their linked objects (migration 0011) are bound to the
registry, so its members can download them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cairn.errors import CairnError
from cairn.server.objects import ObjectService
from cairn.service.accounts import Principal

log = logging.getLogger("cairn.server")

_SERVER = Principal(user_id=None, name="server", is_admin=True)
_NAMED = 10  # failures named one by one at start; the rest are counted


def bind_unbound(objects: ObjectService) -> int:
    """Bind the objects of every version whose project does not hold them yet. Returns how
    many versions were bound. A version whose objects are missing from the store is reported
    and skipped: the server still starts."""
    return _bind_each(
        objects.accounts.unbound(),
        lambda project, root: objects.bind_version(_SERVER, project, root),
        "versions logged without a server",
    )


def bind_unbound_links(objects: ObjectService) -> int:
    """Bind the objects of every live registry link whose registry does not hold them yet.
    Returns how many links were bound; one whose objects are missing is reported and skipped."""
    return _bind_each(
        objects.accounts.registry_unbound(),
        lambda registry, root: objects.bind_link(_SERVER, registry, root),
        "registry links made before registries held objects",
    )


def _bind_each(todo: list[tuple[str, str]], bind: Callable[[str, str], object], what: str) -> int:
    if todo:
        log.info("binding the objects of %d %s", len(todo), what)
    done = failed = 0
    for owner, root in todo:
        try:
            bind(owner, root)
            done += 1
        except CairnError as exc:
            failed += 1
            if failed <= _NAMED:
                log.warning("%s: cannot bind %s (%s): %s", owner, root, what, exc)
    if failed > _NAMED:
        log.warning(
            "%d more %s could not be bound (%d in all): `cairn check --store STORE` names "
            "the versions whose objects are missing",
            failed - _NAMED,
            what,
            failed,
        )
    return done
