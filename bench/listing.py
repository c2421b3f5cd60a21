"""Listing benchmark: pages of a big project through the real server (issue 12).

    .venv/bin/python bench/listing.py [--db sqlite|postgres] [--runs 100000] [--versions 10000]

Fills a fresh database (a SQLite file, or a new PostgreSQL database on the test server, dropped
afterwards) with one project of ``--runs`` runs and two artifacts (``data`` and ``model``) of
``--versions`` versions each, bulk inserted as the registry would leave them. The lineage is a
pipeline repeated once per version: run ``10i`` (prep) uses ``data:v(i-1)`` and logs
``data:vi``; runs ``10i+1..10i+3`` (train) use ``data:vi``; run ``10i+1`` logs ``model:vi``,
which run ``10i+2`` (eval) uses. Every hundredth run failed; versions carry metadata ``acc``,
``arch`` and ``epoch``.

Then starts the server (API and dashboard, open mode) on 127.0.0.1 in this process and asks,
one request at a time, each page ``--repeat`` times: first pages, a deep page (offset half
way), filtered lists, a metadata search, a version page and its lineage graph (the dashboard's
default depth, 3). Prints one JSON line per request: rows returned, median and p95 in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from cairn.metadata.tables import Alias, Artifact, Project, Run, RunArtifact, Version
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.sql import SqlRegistry

PG = os.environ.get("CAIRN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PROJECT = "bench"
JOBS = ("prep", "train", "train", "train", "eval", "sweep", "sweep", "sweep", "sweep", "sweep")
BATCH = 5_000


def run_id(n: int) -> str:
    return f"{n:016x}"


def postgres_database() -> tuple[str, Callable[[], None]]:
    name = "listing_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG.rsplit("/", 1)[0] + "/" + name, drop


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        conn.execute(sa.insert(table), rows[start : start + BATCH])


def fill(url: str, runs: int, versions: int, seed: int) -> dict[str, int]:
    """The project, bulk inserted; returns the ids the requests need."""
    registry = SqlRegistry(url)  # creates the schema
    engine = registry.engine
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        pid = conn.execute(
            sa.insert(Project).values(name=PROJECT, created_at=start).returning(Project.id)
        ).scalar_one()
        run_rows = []
        for n in range(runs):
            began = start + timedelta(seconds=10 * n)
            run_rows.append(
                {
                    "id": run_id(n),
                    "project_id": pid,
                    "name": f"run-{n}",
                    "job_type": JOBS[n % 10],
                    "state": "failed" if n % 100 == 99 else "finished",
                    "started_at": began,
                    "finished_at": began + timedelta(seconds=8),
                    "heartbeat_at": began + timedelta(seconds=8),
                    "config": {"lr": rng.choice([1e-3, 3e-4, 1e-4]), "batch": 32},
                    "summary": {"acc": round(rng.random(), 4)},
                    "tags": [],
                    "notes": "",
                    "failure": "ValueError: bad shape" if n % 100 == 99 else None,
                }
            )
            if len(run_rows) == BATCH:
                _insert(conn, Run.__table__, run_rows)
                run_rows = []
        _insert(conn, Run.__table__, run_rows)
        ids: dict[str, int] = {}
        edges: list[dict[str, Any]] = []
        for kind, producer in (("data", 0), ("model", 1)):
            aid = conn.execute(
                sa.insert(Artifact)
                .values(
                    project_id=pid,
                    name=kind,
                    type="dataset" if kind == "data" else "model",
                    description="",
                    created_at=start,
                    updated_at=start + timedelta(seconds=100 * versions),
                )
                .returning(Artifact.id)
            ).scalar_one()
            rows = [
                {
                    "artifact_id": aid,
                    "version": v,
                    "digest": f"blake3:{kind == 'model':01x}{v:063x}",
                    "size": rng.randrange(1 << 20, 1 << 34),
                    "file_count": rng.randrange(1, 100_000),
                    "description": "",
                    "metadata": {
                        "acc": rng.random(),
                        "arch": rng.choice(["resnet", "vit", "mlp", "bert"]),
                        "epoch": rng.randrange(0, 100),
                    },
                    "created_at": start + timedelta(seconds=100 * v + producer),
                    "run_id": run_id(10 * v + producer) if 10 * v + producer < runs else None,
                    "state": "committed",
                }
                for v in range(versions)
            ]
            _insert(conn, Version.__table__, rows)
            vids = dict(
                conn.execute(
                    sa.select(Version.version, Version.id).where(Version.artifact_id == aid)
                ).all()
            )
            last = vids[versions - 1]
            conn.execute(sa.insert(Alias).values(artifact_id=aid, alias="latest", version_id=last))
            ids[f"{kind}_mid"] = vids[versions // 2]
            for v, vid in vids.items():
                base = 10 * v
                at = start + timedelta(seconds=100 * v)
                if base + producer < runs:
                    edges.append(
                        {
                            "run_id": run_id(base + producer),
                            "version_id": vid,
                            "direction": "output",
                            "at": at,
                        }
                    )
                users = (base + 10, base + 1, base + 2, base + 3) if kind == "data" else (base + 2,)
                for user in users:
                    if user < runs:
                        edges.append(
                            {
                                "run_id": run_id(user),
                                "version_id": vid,
                                "direction": "input",
                                "at": at,
                            }
                        )
        _insert(conn, RunArtifact.__table__, edges)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    registry.close()
    return ids


def requests(ids: dict[str, int], runs: int, versions: int) -> list[tuple[str, str]]:
    p = PROJECT
    mid_run = run_id(10 * (versions // 2) + 1)
    acc = json.dumps({"metadata.acc": {"$gt": 0.99}})
    return [
        ("api: runs, first page", f"/api/v1/projects/{p}/runs?limit=50"),
        ("api: runs, deep page", f"/api/v1/projects/{p}/runs?limit=50&offset={runs // 2}"),
        ("api: runs of one job type", f"/api/v1/projects/{p}/runs?limit=50&job_type=eval"),
        ("api: failed runs", f"/api/v1/projects/{p}/runs?limit=50&state=failed"),
        ("api: artifacts", f"/api/v1/projects/{p}/artifacts"),
        ("api: versions, first page", f"/api/v1/projects/{p}/artifacts/data/versions?limit=50"),
        (
            "api: versions, deep page",
            f"/api/v1/projects/{p}/artifacts/data/versions?limit=50&offset={versions // 2}",
        ),
        ("api: search acc > 0.99", f"/api/v1/search?project={p}&filters={acc}&limit=50"),
        ("api: lineage, depth 3", f"/api/v1/versions/{ids['data_mid']}/lineage?depth=3"),
        ("api: run's inputs", f"/api/v1/runs/{mid_run}/inputs"),
        ("dashboard: project", f"/p/{p}"),
        ("dashboard: runs", f"/p/{p}/runs"),
        ("dashboard: runs, deep page", f"/p/{p}/runs?offset={runs // 2}"),
        ("dashboard: runs of one job type", f"/p/{p}/runs?job_type=eval"),
        ("dashboard: artifact's versions", f"/p/{p}/a/data"),
        ("dashboard: versions, deep page", f"/p/{p}/a/data?offset={versions // 2}"),
        ("dashboard: a version", f"/p/{p}/a/data/v/v{versions // 2}"),
        ("dashboard: lineage, depth 3", f"/p/{p}/a/data/v/v{versions // 2}/lineage"),
        ("dashboard: a run", f"/p/{p}/r/{mid_run}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        drop: Callable[[], None] | None = None
        if args.db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'meta.db'}"
        else:
            url, drop = postgres_database()
        try:
            t0 = time.perf_counter()
            ids = fill(url, args.runs, args.versions, args.seed)
            print(json.dumps({"db": args.db, "filled_s": round(time.perf_counter() - t0, 1)}))
            server = ServerThread(ServerSettings(url, Path(tmp) / "store")).start()
            try:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    for label, path in requests(ids, args.runs, args.versions):
                        times = []
                        for _ in range(args.repeat + 1):  # the first warms caches
                            t = time.perf_counter()
                            response = client.get(path)
                            times.append(time.perf_counter() - t)
                            response.raise_for_status()
                        times = sorted(times[1:])
                        body = (
                            response.json() if "json" in response.headers["content-type"] else None
                        )
                        rows = len(body.get("items", body.get("nodes", []))) if body else None
                        print(
                            json.dumps(
                                {
                                    "db": args.db,
                                    "request": label,
                                    "rows": rows,
                                    "median_ms": round(statistics.median(times) * 1000, 1),
                                    "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
                                }
                            )
                        )
            finally:
                server.stop()
        finally:
            if drop is not None:
                drop()


if __name__ == "__main__":
    main()
