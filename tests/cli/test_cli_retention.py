"""`cairn retention set/show/apply` and `cairn artifact ttl`, embedded and through a server:
what goes and why, what it frees, and that nothing a kept version needs is ever dropped (large
files sharing chunks across versions, another process logging meanwhile, gc right after)."""

from __future__ import annotations

import inspect
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn
from cairn.sdk.backend import reset_backends

MIB = 1 << 20


def content(i: int) -> dict[str, bytes]:
    """The files of version i of vision/ckpt: a 6 MiB checkpoint whose chunks the versions
    mostly share (each differs in one 64 KiB region), a small file each has alone, and one
    file all share."""
    base = bytearray(random.Random(7).randbytes(6 * MIB))
    at = i * 512 * 1024 % (6 * MIB - 65536)
    base[at : at + 65536] = random.Random(100 + i).randbytes(65536)
    return {
        "model.bin": bytes(base),
        "config.json": f'{{"i": {i}}}'.encode(),
        "shared.txt": b"the same in every version",
    }


LOGGER = (
    "import random\nMIB = 1 << 20\n"
    + inspect.getsource(content)
    + """
import sys
from pathlib import Path
import cairn

first, count, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
for i in range(first, first + count):
    folder = work / f"v{i}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in content(i).items():
        (folder / name).write_bytes(data)
    with cairn.init(project="vision", job_type="train") as run:
        art = cairn.Artifact("ckpt", "model", metadata={"i": i})
        art.add_dir(folder)
        run.log_artifact(art)
    print(i, art.version, flush=True)
"""
)


def _log(first: int, count: int, work: Path) -> subprocess.Popen[str]:
    """Log versions first .. first+count-1 from another process."""
    return subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(first), str(count), str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CAIRN_QUIET": "1"},
    )


def _logged(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return {version: int(i) for i, version in (line.split() for line in out.splitlines())}


def _download_all(tmp: Path, expected: dict[str, int]) -> list[str]:
    """Every live version of vision/ckpt, downloaded and compared byte for byte."""
    reset_backends()
    api = cairn.Api(project="vision")
    live = [v.version for v in api.artifact_versions("ckpt")]
    for label in live:
        dest = Path(api.artifact(f"ckpt:{label}").download(tmp / "dl" / label))
        want = content(expected[label])
        got = {p.name: p.read_bytes() for p in dest.iterdir()}
        assert got == want, f"{label} does not download the bytes it was logged with"
    reset_backends()
    return sorted(live, key=lambda v: int(v[1:]))


def test_nothing_a_kept_version_needs_is_dropped(
    cli: Invoke,
    cli_json: Callable[..., Any],
    backend: str,
    server_data: Path | None,
    tmp_path: Path,
) -> None:
    expected = _logged(_log(0, 6, tmp_path / "src"))
    assert expected == {f"v{i}": i for i in range(6)}
    cli("registry", "create", "models")
    cli("link", "vision/ckpt:v0", "models/ckpt")
    reset_backends()
    api = cairn.Api(project="vision")
    production = api.artifact("ckpt:v1")
    production.aliases.append("production")
    production.save()
    reset_backends()
    cli("retention", "set", "vision/ckpt", "--keep-last", "2")

    dry = cli_json("retention", "apply", "--dry-run")
    assert [(r["version"], r["reason"]) for r in dry["removed"]] == [(2, "policy"), (3, "policy")]
    assert [(s["version"], s["because"]) for s in dry["spared"]] == [
        (0, "linked in models/ckpt:v0"),
        (1, "alias production"),
    ]
    # the two versions refer to 12 MiB of files, of which only the regions they alone changed
    # (and their config files) are freed: the rest of their chunks are shared with kept versions
    assert dry["logical_bytes"] == sum(len(b) for i in (2, 3) for b in content(i).values())
    assert 0 < dry["exclusive_bytes"] < dry["referenced_bytes"] < 2 * 6 * MIB
    assert dry["shared_bytes"] == dry["referenced_bytes"] - dry["exclusive_bytes"]
    assert dry["shared_bytes"] > 3 * MIB and dry["exclusive_bytes"] < 6 * MIB

    # another process logs more versions (sharing the same chunks) while retention runs
    logger = _log(6, 3, tmp_path / "src")
    reports = []
    while logger.poll() is None:
        reports.append(cli_json("retention", "apply"))
        time.sleep(0.05)
    expected.update(_logged(logger))
    reports.append(cli_json("retention", "apply"))
    removed = sorted(r["version"] for rep in reports for r in rep["removed"])
    assert removed == [2, 3, 4, 5, 6]
    assert all(r["reason"] == "policy" for rep in reports for r in rep["removed"])

    # gc right after, with no grace: every object no live version needs goes
    if backend == "embedded":
        done = cli_json("retention", "apply", "--gc", "--grace", "0")
        assert done["removed"] == []
        freed = cli_json("gc", "--grace", "0")["bytes_freed"]
    else:
        assert server_data is not None
        store = ["--store", str(server_data / "store")]
        db = ["--database-url", f"sqlite:///{server_data / 'cairn.db'}"]
        result = cli("gc", "--grace", "0", *store, *db, "--json", env={"CAIRN_URL": None})
        import json

        freed = json.loads(result.stdout)["bytes_freed"]
    assert freed >= 0
    if backend == "server":  # a client with empty caches: every byte comes from the server
        os.environ["CAIRN_DIR"] = str(tmp_path / "reader-home")
    assert _download_all(tmp_path, expected) == ["v0", "v1", "v7", "v8"]
    shown = cli("retention", "show", "-p", "vision").stdout
    assert "vision/ckpt" in shown and "keep last 2" in shown


def test_gc_frees_what_the_report_said(
    cli: Invoke, cli_json: Callable[..., Any], backend: str, tmp_path: Path
) -> None:
    """Embedded, `apply --gc` reports the bytes gc freed; through a server the report says
    what the next gc frees, and `--gc` is refused (gc runs where the store is)."""
    _logged(_log(0, 3, tmp_path / "src"))
    cli("retention", "set", "vision/ckpt", "--keep-last", "1")
    if backend == "server":
        refused = cli("retention", "apply", "--gc", code=2)
        assert "--gc runs where the store is" in refused.stderr
        report = cli_json("retention", "apply")
        assert report["freed_after_gc"] is None and report["exclusive_bytes"] > 0
        return
    report = cli_json("retention", "apply", "--gc", "--grace", "0")
    assert [r["version"] for r in report["removed"]] == [0, 1]
    # gc drops the packs nothing live needs and rewrites those mostly dead; a pack still more
    # than half live (here: the first log's, holding the shared checkpoint) is kept whole
    assert 0 < report["freed_after_gc"] <= report["referenced_bytes"]
    assert report["exclusive_bytes"] > 0
    text = cli("retention", "apply", "--dry-run").stdout
    assert "Would delete 0 version(s)" in text


def test_ttl_of_a_version(
    cli: Invoke, cli_json: Callable[..., Any], backend: str, tmp_path: Path
) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    with cairn.init(project="vision") as run:
        art = cairn.Artifact("clf", "model")
        art.add_dir(folder)
        art.ttl = timedelta(days=30)  # set on the draft: applied when it is logged
        run.log_artifact(art)
    assert art.ttl == timedelta(days=30)
    assert art.expires_at == art.created_at + timedelta(days=30)
    art.ttl = None  # never, at once
    assert art.ttl is None and art.expires_at is None
    reset_backends()

    shown = cli_json("artifact", "ttl", "vision/clf:v0")
    assert (shown["own"], shown["ttl"], shown["source"]) == (0, None, "version")
    cli("retention", "set", "-p", "vision", "--ttl", "2w")
    assert cli_json("artifact", "ttl", "vision/clf:v0", "inherit")["source"] == "project"
    text = cli("artifact", "ttl", "vision/clf:v0", "12h").stdout
    assert "TTL 12h (version), expires" in text
    assert "never expires" in cli("artifact", "ttl", "vision/clf:v0", "none").stdout
    history = cli_json("artifact", "history", "vision/clf:v0")
    assert [h["field"] for h in history].count("ttl") == 5  # 30d, never, inherit, 12h, none
    shown_history = cli("artifact", "history", "vision/clf:v0").stdout
    assert "ttl: inherit -> 30d" in shown_history and "ttl: 12h -> none" in shown_history

    bad = cli("artifact", "ttl", "vision/clf:v0", "3x", code=2)
    assert "bad duration '3x'" in bad.stderr
    assert "bad duration" in cli("retention", "set", "-p", "vision", "--ttl", "soon", code=2).stderr
    negative = cli("retention", "set", "vision/clf", "--keep-last", "-2", code=2)
    assert "keep_last must be at least 1" in negative.stderr
    unknown = cli("retention", "set", "vision/clf", "--keep-best", "2", "--by", "acc", code=2)
    assert "unknown metadata key 'acc'" in unknown.stderr
    assert "nothing to set" in cli("retention", "set", "vision/clf", code=2).stderr
    gone = cli("retention", "set", "vision/nope", "--keep-last", "1", code=3)
    assert "nope" in gone.stderr


def test_the_python_api_sets_policies_and_applies_them(backend: str, tmp_path: Path) -> None:
    from cairn.errors import InvalidInputError

    _logged(_log(0, 4, tmp_path / "src"))
    reset_backends()
    api = cairn.Api(project="vision")
    api.create_registry("candidates")
    api.artifact("ckpt:v0").link("candidates/ckpt")
    assert api.set_retention("ckpt", keep_last=1, keep_used_days=3).rules() == [
        "keep last 1",
        "keep used within 3d",
    ]
    assert api.set_retention(ttl=timedelta(days=90)).rules() == ["ttl 90d"]  # the project's
    assert api.set_retention("candidates/ckpt", ttl=timedelta(hours=12)).kind == "collection"
    assert api.set_retention("ckpt", keep_used_days=None).rules() == ["keep last 1"]
    assert api.set_retention("vision/ckpt", ttl=None).rules() == ["ttl none", "keep last 1"]
    assert {p.target.label() for p in api.retention_policies()} == {"vision", "vision/ckpt"}
    assert [p.rules() for p in api.retention_policies(registry="candidates")] == [["ttl 12h"]]
    for bad, message in (
        ({"keep_last": -3}, "keep_last must be at least 1"),
        ({"ttl": timedelta(0)}, "positive whole number of seconds"),
        ({"keep_best": 2, "by": "val_loss"}, "unknown metadata key 'val_loss'"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            api.set_retention("ckpt", **bad)  # type: ignore[arg-type]

    dry = api.apply_retention(dry_run=True)
    assert [(r.version, r.reason) for r in dry.removed] == [(1, "policy"), (2, "policy")]
    assert [(s.version, s.because) for s in dry.spared] == [(0, "linked in candidates/ckpt:v0")]
    assert dry.exclusive_bytes is not None and 0 < dry.exclusive_bytes < dry.logical_bytes
    done = api.apply_retention("vision")
    assert [r.version for r in done.removed] == [1, 2]
    assert [v.version for v in api.artifact_versions("ckpt")] == ["v3", "v0"]
