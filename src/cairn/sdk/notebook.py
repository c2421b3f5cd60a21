"""HTML cards for Jupyter: what ``_repr_html_`` of a version and a run shows (a lineage graph's
is `cairn.core.lineage.graph_html`).

Self-contained HTML (inline styles, no scripts, every value escaped), so it renders the same
in JupyterLab, VS Code and a notebook exported to HTML.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.sdk.artifact import Artifact, ArtifactFile
    from cairn.sdk.run import Run

_FILES_SHOWN = 12
_KEYS_SHOWN = 20

_CARD = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;"
    "border:1px solid #d0d5dd;border-radius:8px;padding:10px 14px;max-width:760px;"
    "color:#1d2430;background:#fff"
)
_TH = "text-align:left;color:#667085;font-weight:500;padding:2px 12px 2px 0;vertical-align:top"
_TD = "text-align:left;padding:2px 12px 2px 0;vertical-align:top"
_CHIP = "display:inline-block;border-radius:10px;padding:0 8px;margin-right:4px;font-size:12px"
_STATE = {"running": "#2f6fde", "finished": "#1f9d6b", "failed": "#d92d20", "crashed": "#d9822b"}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _chips(values: list[str], color: str) -> str:
    return "".join(
        f'<span style="{_CHIP};background:{color}1a;color:{color}">{escape(v)}</span>'
        for v in values
    )


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return escape(text if len(text) <= 120 else text[:119] + "…")


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f'<tr><th style="{_TH}">{k}</th><td style="{_TD}">{v}</td></tr>' for k, v in rows
    )
    return f'<table style="border-collapse:collapse;margin:4px 0">{body}</table>'


def _dict_table(title: str, data: dict[str, Any]) -> str:
    if not data:
        return ""
    keys = list(data)[:_KEYS_SHOWN]
    rows = [(escape(k), _value(data[k])) for k in keys]
    more = f"<div style='color:#667085'>… and {len(data) - len(keys)} more</div>"
    extra = more if len(data) > len(keys) else ""
    return f"<div style='margin-top:6px;font-weight:600'>{escape(title)}</div>{_table(rows)}{extra}"


def version_html(art: Artifact) -> str:
    if art.is_draft:
        files = art.files()
        return (
            f'<div class="cairn-card cairn-draft" style="{_CARD}"><b>{escape(art.name)}</b> '
            f"<span style='color:#667085'>draft {escape(art.type)}, {len(files)} files, "
            "not logged yet</span></div>"
        )
    rows = [
        ("type", escape(art.type)),
        ("digest", f"<code>{escape(art.digest)}</code>"),
        ("size", f"{human_size(art.size)} in {art.file_count} files"),
        ("logged", escape(art.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"))),
    ]
    if art.aliases:
        rows.append(("aliases", _chips(art.aliases, "#2f6fde")))
    if art.tags:
        rows.append(("tags", _chips(art.tags, "#667085")))
    producer = art.logged_by()
    if producer is not None:
        rows.append(("logged by", f"run <code>{escape(producer.id)}</code>"))
    if art.description:
        rows.append(("description", escape(art.description)))
    if art.state != "committed":
        rows.append(("state", escape(art.state)))
    files_html = ""
    if art.state == "committed":
        shown: list[ArtifactFile] = []
        for f in art.iter_files():
            if len(shown) == _FILES_SHOWN:
                break
            shown.append(f)
        items = "".join(
            f'<tr><td style="{_TD}"><code>{escape(f.path)}</code></td>'
            f'<td style="{_TD};text-align:right">{human_size(f.size)}</td></tr>'
            for f in shown
        )
        more = art.file_count - len(shown)
        tail = f"<div style='color:#667085'>… and {more} more files</div>" if more > 0 else ""
        files_html = (
            "<div style='margin-top:6px;font-weight:600'>Files</div>"
            f"<table style='border-collapse:collapse'>{items}</table>{tail}"
        )
    return (
        f'<div class="cairn-card cairn-version" style="{_CARD}">'
        f"<div style='font-size:15px;font-weight:600'>{escape(art.qualified_name)}</div>"
        f"{_table(rows)}{_dict_table('Metadata', art.metadata)}{files_html}</div>"
    )


def run_html(run: Run) -> str:
    info = run.info
    color = _STATE.get(info.state, "#667085")
    rows = [
        ("id", f"<code>{escape(info.id)}</code>"),
        ("project", escape(info.project)),
        ("state", f'<span style="{_CHIP};background:{color}1a;color:{color}">{info.state}</span>'),
        ("started", escape(info.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"))),
    ]
    if info.job_type:
        rows.append(("job type", escape(info.job_type)))
    if info.finished_at:
        seconds = (info.finished_at - info.started_at).total_seconds()
        rows.append(("duration", f"{seconds:.1f} s"))
    if info.tags:
        rows.append(("tags", _chips(info.tags, "#667085")))
    if info.git_commit:
        dirty = " (uncommitted changes)" if info.git_dirty else ""
        rows.append(("git", f"<code>{escape(info.git_commit[:12])}</code>{dirty}"))
    if info.notes:
        rows.append(("notes", escape(info.notes)))
    used = [a.qualified_name for a in run.used_artifacts()]
    logged = [a.qualified_name for a in run.logged_artifacts()]
    if used:
        rows.append(("used", "<br>".join(f"<code>{escape(n)}</code>" for n in used)))
    if logged:
        rows.append(("logged", "<br>".join(f"<code>{escape(n)}</code>" for n in logged)))
    summary = run.summary if run._active else info.summary
    return (
        f'<div class="cairn-card cairn-run" style="{_CARD}">'
        f"<div style='font-size:15px;font-weight:600'>run {escape(info.name)}</div>"
        f"{_table(rows)}{_dict_table('Config', run.config)}{_dict_table('Summary', summary)}"
        "</div>"
    )
