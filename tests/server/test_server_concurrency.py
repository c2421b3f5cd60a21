"""Several server processes on one PostgreSQL and one store folder, and several client
processes logging the same artifact at once: version numbers stay consecutive and unique,
and whatever one server stored the other serves."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
from server_helpers import PY, ServerProcess, cairn_cmd, client_env

CLIENTS = 6
VERSIONS = 3

LOGGER = """
import os, sys, time
from pathlib import Path
import cairn
i, start = int(sys.argv[1]), Path(sys.argv[2])
work = Path(sys.argv[3])
(start.parent / f"ready-{{i}}").touch()  # imported: at the start line
while not start.exists():
    time.sleep(0.005)
for j in range({versions}):
    folder = work / f"v{{j}}"
    folder.mkdir(parents=True)
    (folder / "who.txt").write_text(f"client {{i}} version {{j}}")
    (folder / "shared.txt").write_text("the same in every version")
    with cairn.init(project="p", job_type="train") as run:
        art = cairn.Artifact("shared", "dataset", metadata={{"client": i, "n": j}})
        art.add_dir(folder)
        run.log_artifact(art)
        run.log({{"step": j}})
    print(art.version, flush=True)
"""


def test_clients_on_two_server_processes_get_consecutive_versions(
    tmp_path: Path, postgres_url: str
) -> None:
    made = subprocess.run(
        cairn_cmd("server", "create-admin", "root", "--database-url", postgres_url),
        env={**os.environ, "CAIRN_DIR": str(tmp_path / "admin")},
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("cairn_") and "shown only now" in made.stderr
    store = tmp_path / "store"
    servers = [ServerProcess(postgres_url, store, env=dict(os.environ)) for _ in range(2)]
    try:
        start = tmp_path / "go"
        clients = [
            subprocess.Popen(
                [
                    PY,
                    "-c",
                    LOGGER.format(versions=VERSIONS),
                    str(i),
                    str(start),
                    str(tmp_path / f"w{i}"),
                ],
                env=client_env(servers[i % 2].url, key, tmp_path / f"home{i}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(CLIENTS)
        ]
        # a real start barrier: every client has imported and waits at the start line
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{i}").exists() for i in range(CLIENTS)):
            for c in clients:
                assert c.poll() is None, c.communicate()[1]
            assert time.monotonic() < deadline, "the clients did not reach the start line"
            time.sleep(0.01)
        start.touch()
        labels = []
        for c in clients:
            out, err = c.communicate(timeout=120)
            assert c.returncode == 0, err
            labels += out.split()
        assert sorted(labels, key=lambda v: int(v[1:])) == [
            f"v{n}" for n in range(CLIENTS * VERSIONS)
        ]

        headers = {"Authorization": f"Bearer {key}"}
        seen = []
        for server in servers:
            versions = httpx.get(
                f"{server.url}/api/v1/projects/p/artifacts/shared/versions",
                params={"limit": 100},
                headers=headers,
            ).json()["items"]
            seen.append([(v["version"], v["digest"]) for v in versions])
        assert seen[0] == seen[1]  # both processes serve the same registry
        numbers = [n for n, _ in seen[0]]
        assert numbers == list(range(CLIENTS * VERSIONS - 1, -1, -1))
        assert len({d for _, d in seen[0]}) == CLIENTS * VERSIONS
        # each client's versions were numbered in the order it logged them
        for i in range(CLIENTS):
            mine = [
                v["metadata"]["n"]
                for v in reversed(
                    httpx.get(
                        f"{servers[0].url}/api/v1/projects/p/artifacts/shared/versions",
                        params={"limit": 100},
                        headers=headers,
                    ).json()["items"]
                )
                if v["metadata"]["client"] == i
            ]
            assert mine == list(range(VERSIONS))

        # objects stored through one process are served by the other
        reader = (
            "import cairn, sys\n"
            "art = cairn.Api('p').artifact('shared:v' + sys.argv[1])\n"
            "out = art.download(sys.argv[2])\n"
            "print(open(out + '/who.txt').read())\n"
        )
        for n, server in ((0, servers[1]), (CLIENTS * VERSIONS - 1, servers[0])):
            got = subprocess.run(
                [PY, "-c", reader, str(n), str(tmp_path / f"out{n}")],
                env=client_env(server.url, key, tmp_path / f"reader{n}"),
                capture_output=True,
                text=True,
            )
            assert got.returncode == 0, got.stderr
            assert got.stdout.startswith("client ")

        # a key revoked on the command line is refused by every process at once
        revoked = subprocess.run(
            cairn_cmd("server", "revoke-key", "1", "--database-url", postgres_url),
            capture_output=True,
            text=True,
        )
        assert revoked.returncode == 0, revoked.stderr
        for server in servers:
            refused = httpx.get(f"{server.url}/api/v1/projects", headers=headers)
            assert refused.status_code == 401
    finally:
        for server in servers:
            server.stop()
