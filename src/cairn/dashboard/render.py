"""Templates and the small formatting helpers they use (sizes, times, Markdown, URLs)."""

from __future__ import annotations

import json
import math
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# CommonMark without raw HTML (descriptions are user input): links are checked by markdown-it
# (no javascript: URLs), tables and strikethrough as on GitHub.
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def markdown(text: str | None) -> Markup:
    return Markup(_md.render(text or ""))


def human_size(n: int | float | None) -> str:
    """1536 -> '1.5 KiB' (binary units, as the rest of Cairn's docs)."""
    if n is None:
        return "—"
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
    return f"{n:.0f} PiB"  # pragma: no cover


def when(dt: datetime | None) -> str:
    if dt is None:
        return "—"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(dt: datetime | None, now: datetime | None = None) -> str:
    if dt is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - dt).total_seconds()
    if seconds < 0:
        return "just now"
    for limit, div, unit in (
        (60, 1, "s"),
        (3600, 60, "min"),
        (86400, 3600, "h"),
        (86400 * 45, 86400, "d"),
        (86400 * 365 * 2, 86400 * 30, "mo"),
        (math.inf, 86400 * 365, "y"),
    ):
        if seconds < limit:
            return f"{int(seconds // div)} {unit} ago"
    return when(dt)  # pragma: no cover


def duration(start: datetime | None, end: datetime | None) -> str:
    """'1 h 02 min', '3.2 s'; a run without an end counts up to now."""
    if start is None:
        return "—"
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def short_digest(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "—"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:n]}…" if hexdigest else digest[:n]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def scalar(value: Any) -> str:
    """A metadata or config value on one line: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def is_simple(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class Urls:
    """Every dashboard URL in one place (`prefix` is where the router is mounted)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")

    def _q(self, path: str, query: dict[str, Any] | None) -> str:
        url = self.prefix + path
        if query:
            items = [(k, v) for k, v in query.items() if v is not None and v != ""]
            if items:
                url += "?" + urlencode(items, doseq=True)
        return url

    def home(self) -> str:
        return self.prefix + "/"

    def static(self, name: str) -> str:
        return f"{self.prefix}/static/{name}"

    def login(self, next_url: str | None = None) -> str:
        return self._q("/login", {"next": next_url})

    def logout(self) -> str:
        return self.prefix + "/logout"

    def project(self, project: str, **query: Any) -> str:
        return self._q(f"/p/{quote(project)}", query)

    def runs(self, project: str, **query: Any) -> str:
        return self._q(f"/p/{quote(project)}/runs", query)

    def storage(self, project: str, **query: Any) -> str:
        return self._q(f"/p/{quote(project)}/storage", query)

    def artifact(self, project: str, name: str, **query: Any) -> str:
        return self._q(f"/p/{quote(project)}/a/{quote(name)}", query)

    def version(
        self, project: str, name: str, version: int | str, tab: str = "", **query: Any
    ) -> str:
        label = f"v{version}" if isinstance(version, int) else version
        path = f"/p/{quote(project)}/a/{quote(name)}/v/{quote(label, safe=':')}"
        if tab:
            path += "/" + tab
        return self._q(path, query)

    def files(self, project: str, name: str, version: int, path: str = "", **query: Any) -> str:
        base = self.version(project, name, version, "files")
        if path:
            base += "/" + quote(path, safe="/")
        return self._q(base[len(self.prefix) :], query)

    def raw(self, project: str, name: str, version: int, path: str, download: bool = False) -> str:
        base = self.version(project, name, version, "raw") + "/" + quote(path, safe="/")
        return base + ("?download=1" if download else "")

    def run(self, project: str, run_id: str, **query: Any) -> str:
        return self._q(f"/p/{quote(project)}/r/{quote(run_id)}", query)

    def registries(self, **query: Any) -> str:
        return self._q("/registries", query)

    def registry(self, registry: str, **query: Any) -> str:
        return self._q(f"/registries/{quote(registry)}", query)

    def collection(self, registry: str, collection: str, **query: Any) -> str:
        return self._q(f"/registries/{quote(registry)}/c/{quote(collection)}", query)

    def audit(self, **query: Any) -> str:
        return self._q("/audit", query)

    def audit_export(self, **query: Any) -> str:
        return self._q("/audit/export", query)

    def webhooks(self, project: str | None = None, registry: str | None = None) -> str:
        if registry is not None:
            return self._q(f"/registries/{quote(registry)}/webhooks", None)
        return self._q(f"/p/{quote(project or '')}/webhooks", None)

    def webhook(self, webhook_id: int, tail: str = "") -> str:
        return self._q(f"/webhooks/{webhook_id}" + (f"/{tail}" if tail else ""), None)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        size=human_size,
        when=when,
        ago=ago,
        short=short_digest,
        md=markdown,
        pretty=pretty_json,
        scalar=scalar,
        shquote=shlex.quote,
    )
    env.globals.update(duration=duration, is_simple=is_simple)
    return env
