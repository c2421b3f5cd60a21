"""Cairn's web dashboard: server-rendered pages over the registry and the object store.

`dashboard_router` gives the routes as a FastAPI `APIRouter` (the server mounts it at ``/``);
`create_dashboard_app` runs them on their own over an `EmbeddedBackend`. Importing this package
imports FastAPI and Jinja2 (the ``server`` extra).
"""

from cairn.dashboard.app import create_dashboard_app, dashboard_router
from cairn.dashboard.auth import Access, OpenAccess, Viewer

__all__ = ["Access", "OpenAccess", "Viewer", "create_dashboard_app", "dashboard_router"]
