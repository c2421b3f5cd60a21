"""Search benchmark: a metadata filter over 100,000 versions (issue 16: under 300 ms).

Fills a fresh registry database with ``--versions`` versions of one artifact (bulk inserted,
as commit_version would leave them: metadata ``{"acc": float, "arch": str, "epoch": int}``,
every tenth version tagged ``eval``), then times `SqlRegistry.search_versions` for a few
filters, each asking for the first page (100) in the given order. Prints a JSON line per query
with the best and median of ``--repeat`` runs.

    python bench/search.py --db sqlite            # a SQLite file in a temp folder
    python bench/search.py --db postgresql+psycopg://127.0.0.1/DB   # an empty database of its own
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cairn.metadata.tables import Artifact, Project, Version, VersionTag
from cairn.service.sql import SqlRegistry

EVAL = {"metadata.acc": {"$gt": 0.9}, "tags": "eval"}
RARE = {"$or": [{"metadata.epoch": {"$in": [1, 2, 3]}}, {"metadata.acc": {"$lt": 0.01}}]}
QUERIES: list[tuple[str, dict[str, Any], str | None]] = [
    ("acc > 0.99, by -acc", {"metadata.acc": {"$gt": 0.99}}, "-metadata.acc"),
    ("acc > 0.9 and tag eval, by -acc", EVAL, "-metadata.acc"),
    ("arch = vit, newest", {"metadata.arch": "vit"}, None),
    ("epoch = 7 (1%), newest", {"metadata.epoch": 7}, None),
    ("epoch in [1,2,3] or acc < 0.01", RARE, None),
    ("no filter, by -acc", {}, "-metadata.acc"),
]


def fill(registry: SqlRegistry, count: int, seed: int) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with registry.engine.begin() as conn:
        pid = conn.execute(
            sa.insert(Project).values(name="bench", created_at=start).returning(Project.id)
        ).scalar_one()
        aid = conn.execute(
            sa.insert(Artifact)
            .values(
                project_id=pid,
                name="model",
                type="model",
                description="",
                created_at=start,
                updated_at=start,
            )
            .returning(Artifact.id)
        ).scalar_one()
        batch: list[dict[str, Any]] = []
        for n in range(count):
            batch.append(
                {
                    "artifact_id": aid,
                    "version": n,
                    "digest": f"blake3:{n:064x}",
                    "size": rng.randrange(1, 1 << 30),
                    "file_count": rng.randrange(1, 1000),
                    "description": "",
                    "metadata": {
                        "acc": rng.random(),
                        "arch": rng.choice(["resnet", "vit", "mlp", "bert"]),
                        "epoch": rng.randrange(0, 100),
                    },
                    "created_at": start + timedelta(seconds=n),
                    "run_id": None,
                    "state": "committed",
                }
            )
            if len(batch) == 5000:
                conn.execute(sa.insert(Version.__table__), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(Version.__table__), batch)
        ids = conn.execute(sa.select(Version.id).where(Version.version % 10 == 0)).scalars()
        conn.execute(sa.insert(VersionTag), [{"version_id": i, "tag": "eval"} for i in ids])
    with registry.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE"))
            conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite", help="'sqlite' or a database URL")
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}" if args.db == "sqlite" else args.db
        registry = SqlRegistry(url)
        try:
            t0 = time.perf_counter()
            fill(registry, args.versions, args.seed)
            print(
                json.dumps({"filled": args.versions, "seconds": round(time.perf_counter() - t0, 2)})
            )
            for label, filters, order in QUERIES:
                times = []
                found = 0
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    found = len(
                        registry.search_versions(
                            project="bench", filters=filters, order=order, limit=100
                        )
                    )
                    times.append(time.perf_counter() - t)
                print(
                    json.dumps(
                        {
                            "db": registry.engine.dialect.name,
                            "query": label,
                            "returned": found,
                            "best_ms": round(min(times) * 1000, 1),
                            "median_ms": round(statistics.median(times) * 1000, 1),
                        }
                    )
                )
        finally:
            registry.close()


if __name__ == "__main__":
    main()
