"""Serving a store that was written without a server.

The server lets a user read an object only when a project they may read holds it
(``project_objects``), and it records what each project holds when versions are committed
through it. Versions logged in embedded mode, before the team ran `cairn server` over the
same folder and database, were committed without that record: at start the server walks
those versions once and binds their objects to their projects, so that members who are not
administrators can download them.
"""

from __future__ import annotations

import logging

from cairn.errors import CairnError
from cairn.server.accounts import Principal
from cairn.server.objects import ServerObjects

log = logging.getLogger("cairn.server")

_SERVER = Principal(user_id=None, name="server", is_admin=True)


def bind_unbound(objects: ServerObjects) -> int:
    """Bind the objects of every version (and run code diff) its project does not hold yet.
    Returns how many versions and diffs were bound. A version whose objects are missing from
    the store is reported and skipped: the server still starts."""
    todo = objects.accounts.unbound()
    if todo:
        log.info("binding the objects of %d versions logged without a server", len(todo))
    done = 0
    for project, digest, kind in todo:
        try:
            if kind == "t":
                objects.bind_version(_SERVER, project, digest)
            else:
                objects.bind_objects(_SERVER, project, [digest])
            done += 1
        except CairnError as exc:
            log.warning("project %s: cannot bind %s: %s", project, digest, exc)
    return done
