"""The dashboard's pages, one module per part of the site; each declares its routes on a
module-level `Pages` (see `cairn.dashboard.context`), and `cairn.dashboard.app` adds them all
to each dashboard router in the order of `MODULES`."""

from cairn.dashboard.context import Pages
from cairn.dashboard.pages import (
    archive,
    audit,
    compare,
    edits,
    files,
    lineage,
    login,
    projects,
    registries,
    retention,
    runs,
    static,
    versions,
    webhooks,
)

MODULES = (
    static,
    login,
    projects,
    runs,
    versions,
    edits,
    files,
    archive,
    lineage,
    compare,
    registries,
    audit,
    webhooks,
    retention,
)


def all_pages() -> list[Pages]:
    return [module.pages for module in MODULES]


__all__ = ["MODULES", "all_pages"]
