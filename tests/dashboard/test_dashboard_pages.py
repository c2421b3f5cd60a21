"""The dashboard without a browser (FastAPI's TestClient): every page, pagination over large
folders and many versions, previews that read only the start of a file, downloads, edits,
storage accounting and permissions."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from dashboard_helpers import StubAccess, TestClient, open_backend
from dashboard_seed import FAN_OUT, MANY, PROJECT, big_csv, png

import cairn
from cairn.core.digest import hash_bytes
from cairn.dashboard import create_dashboard_app
from cairn.dashboard.storage import StorageIndex
from cairn.objects import tree
from cairn.sdk.backend import reset_backends

ORIGIN = {"origin": "http://testserver"}


class CountingStore:
    """An object store that records what is read from it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[tuple[str, int]] = []

    def get(self, digest: str, verify: bool = True) -> bytes:
        data: bytes = self.inner.get(digest, verify)
        self.reads.append((digest, len(data)))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.reads.clear()

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n in self.reads)


def client_for(backend: Any, access: Any = None) -> tuple[TestClient, CountingStore]:
    store = CountingStore(backend.object_store)
    app = create_dashboard_app(
        SimpleNamespace(registry=backend.registry, object_store=store), access
    )
    return TestClient(app), store


@pytest.fixture(scope="module")
def seeded(seeded_home: Path) -> Iterator[tuple[TestClient, CountingStore, Any]]:
    backend = open_backend(seeded_home)
    client, store = client_for(backend)
    yield client, store, backend
    backend.close()


@pytest.fixture
def fresh(cairn_env: Path) -> Iterator[Any]:
    """An empty embedded store (this test's CAIRN_DIR) opened for the dashboard."""
    backend = open_backend(cairn_env)
    yield backend
    backend.close()
    reset_backends()


def text(response: Any) -> str:
    """The page's visible text, roughly: tags removed, whitespace collapsed, en dashes (the
    pager's ranges) as hyphens."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)).replace("\u2013", "-")


def runs_of(backend: Any, job_type: str) -> list[Any]:
    runs: list[Any] = backend.registry.list_runs(PROJECT, job_type=job_type)
    return runs


# --- every page of the seeded store ---------------------------------------------------------


def test_projects_and_project_pages(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/")
    assert r.status_code == 200
    assert 'href="/p/demo"' in r.text

    page = text(client.get("/p/demo"))
    for name in ("training-data", "classifier", "eval-report", "samples"):
        assert name in page
    for kind in ("dataset", "model", "evaluation"):
        assert kind in page
    assert "4 artifacts" in page

    found = text(client.get("/p/demo?q=pet"))  # the description of samples: "Pet images"
    assert "samples" in found and "classifier" not in found
    assert "No artifact matches" in text(client.get("/p/demo?q=zzz-nothing"))
    only = text(client.get("/p/demo?type=model"))
    assert "classifier" in only and "training-data" not in only


def test_runs_page_filters_and_pages(seeded: Any) -> None:
    client, _, _ = seeded
    page = text(client.get("/p/demo/runs"))
    for job in ("dataset-creation", "training", "evaluation", "fine-tuning", "sweep", "collect"):
        assert job in page
    assert "finished" in page
    sweeps = client.get("/p/demo/runs?job_type=sweep&limit=5")
    assert sweeps.text.count('class="state state-finished"') == 5
    assert "1-5" in text(sweeps)
    assert 'rel="next"' in sweeps.text
    last = client.get(f"/p/demo/runs?job_type=sweep&limit=5&offset={FAN_OUT - 2}")
    assert last.text.count('class="state state-finished"') == 2
    assert 'rel="next"' not in last.text
    assert "No runs" in text(client.get("/p/demo/runs?state=crashed"))
    assert client.get("/p/demo/runs?state=bogus").status_code == 400


def test_artifact_and_version_pages(seeded: Any) -> None:
    client, _, backend = seeded
    art = text(client.get("/p/demo/a/training-data"))
    assert "v1" in art and "v0" in art and "stable" in art and "shifted" in art
    assert "Synthetic two-class data" in art
    logger = backend.registry.logged_by(backend.registry.resolve(PROJECT, "training-data").id)
    assert logger.name in art

    r = client.get("/p/demo/a/training-data/v/v0")
    assert r.status_code == 200
    page = text(r)
    assert "Synthetic two-class data." in page  # description rendered from Markdown
    assert "<code>examples/pipeline.py</code>" in r.text
    assert "train_rows" in page and "320" in page  # metadata
    assert "run.use_artifact(&#34;demo/training-data:v0&#34;)" in r.text
    assert "cairn artifact get demo/training-data:v0" in page

    usage = text(client.get("/p/demo/a/training-data/v/v1/usage"))
    assert f"Used by {FAN_OUT + 1}" in usage  # the sweeps and the fine-tuning run
    for run in runs_of(backend, "sweep")[:3]:
        assert run.name in usage
    history = text(client.get("/p/demo/a/classifier/v/v0/history"))
    assert "created" in history and "aliases" in history and "test_acc" in history


def test_version_refs_redirect_to_vn(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/p/demo/a/training-data/v/latest", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/p/demo/a/training-data/v/v1"
    r = client.get("/p/demo/a/classifier/v/production/files?x=1", follow_redirects=False)
    assert r.headers["location"] == "/p/demo/a/classifier/v/v0/files?x=1"


def test_errors_are_html_pages(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/p/nope")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "does not exist" in text(r)
    assert client.get("/p/demo/a/nothing").status_code == 404
    assert client.get("/p/demo/a/training-data/v/v99").status_code == 404
    assert client.get("/p/demo/a/training-data/v/v1/files/nope.txt").status_code == 404
    assert client.get("/p/demo/a/training-data/v/v1/lineage?depth=0").status_code == 400
    assert client.get("/p/demo/r/zzzzzzzz").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


def test_run_page(seeded: Any) -> None:
    client, _, backend = seeded
    run = runs_of(backend, "fine-tuning")[0]
    page = text(client.get(f"/p/demo/r/{run.id}"))
    assert "fine-tuning" in page and "finished" in page
    assert "classifier:v0" in page and "training-data:v1" in page  # used
    assert "classifier:v1" in page  # logged
    assert "lr" in page and "0.05" in page  # config
    assert "test_acc" in page  # summary
    assert run.host in page
    other = runs_of(backend, "sweep")[0]
    assert client.get(f"/p/other/r/{other.id}").status_code == 404


def test_a_relog_is_shown_as_one_and_not_as_a_producer(seeded: Any) -> None:
    client, _, backend = seeded
    v1 = backend.registry.resolve("demo", "classifier", "v1")
    again = backend.registry.create_run("demo", name="same-weights-again", job_type="train")
    info, created = backend.registry.commit_version(
        "demo", "classifier", "model", digest=v1.digest, size=v1.size,
        file_count=v1.file_count, run_id=again.id,
    )  # fmt: skip
    assert not created and info.id == v1.id
    run_page = text(client.get(f"/p/demo/r/{again.id}"))
    assert "classifier:v1" in run_page and "re-logged" in run_page
    maker_page = text(client.get(f"/p/demo/r/{v1.run_id}"))
    assert "classifier:v1" in maker_page and "re-logged" not in maker_page
    history = text(client.get("/p/demo/a/classifier/v/v1/history"))
    assert "relogged" in history and "identical content logged again" in history
    assert "same-weights-again" in history
    lineage = text(client.get("/p/demo/a/classifier/v/v1/lineage"))
    assert "same-weights-again" not in lineage


def test_a_run_whose_process_went_silent_shows_as_crashed(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, backend = seeded
    run = backend.registry.create_run("heartbeats", job_type="train")
    page = text(client.get(f"/p/heartbeats/r/{run.id}"))
    assert "running" in page and "(running)" in page and "Last heartbeat" in page
    monkeypatch.setenv("CAIRN_RUN_TIMEOUT_SECONDS", "0.1")
    time.sleep(0.3)
    page = text(client.get(f"/p/heartbeats/r/{run.id}"))
    assert "crashed" in page and "(running)" not in page
    assert "silent since: its process is gone" in page
    listed = text(client.get("/p/heartbeats/runs?state=crashed"))
    assert run.name in listed
    assert run.name not in text(client.get("/p/heartbeats/runs?state=running"))


def test_a_failed_runs_page_says_what_it_failed_with(seeded: Any) -> None:
    client, _, backend = seeded
    run = backend.registry.create_run("failing", job_type="train")
    backend.registry.update_run(run.id, state="failed", failure="ValueError: <bad> shape")
    page = client.get(f"/p/failing/r/{run.id}").text
    assert "Failed with" in page
    assert "ValueError: &lt;bad&gt; shape" in page  # escaped, never markup


# --- files: folders, previews, downloads -------------------------------------------------------


def test_file_browser_folders(seeded: Any) -> None:
    client, _, _ = seeded
    root = text(client.get("/p/demo/a/samples/v/v0/files"))
    for name in ("images/", "many/", "big.csv", "labels.tsv", "config.json", "NOTES.md"):
        assert name in root
    many = client.get("/p/demo/a/samples/v/v0/files/many")
    assert many.text.count('class="file"') == 100
    assert f"1-100 of {MANY}" in text(many)
    rest = client.get("/p/demo/a/samples/v/v0/files/many?offset=100")
    assert rest.text.count('class="file"') == MANY - 100
    assert "item-0129.txt" in rest.text
    jump = client.get("/p/demo/a/samples/v/v0/files/many?start=item-0120")
    assert text(jump).count("item-01") == 10 and "item-0119" not in jump.text
    cats = text(client.get("/p/demo/a/samples/v/v0/files/images/cats"))
    assert "cat-0.png" in cats


def test_previews(seeded: Any) -> None:
    client, _, _ = seeded
    base = "/p/demo/a/samples/v/v1/files/"
    tsv = client.get(base + "labels.tsv").text
    assert "<th>label</th>" in tsv and "<td>dog</td>" in tsv
    js = client.get(base + "config.json").text
    assert "&#34;classes&#34;: [" in js  # pretty-printed JSON
    md = client.get(base + "NOTES.md").text
    assert "<h1>Samples</h1>" in md and "<li>cats</li>" in md
    img = client.get(base + "images/cats/cat-0.png").text
    assert '<img src="/p/demo/a/samples/v/v1/raw/images/cats/cat-0.png"' in img
    raw = client.get("/p/demo/a/samples/v/v1/raw/images/cats/cat-0.png")
    assert raw.headers["content-type"] == "image/png"
    assert raw.content == png(64, 48, (220, 120, 40))
    assert "sandbox" in raw.headers["content-security-policy"]
    assert raw.headers["x-content-type-options"] == "nosniff"
    cached = client.get(
        "/p/demo/a/samples/v/v1/raw/images/cats/cat-0.png",
        headers={"if-none-match": raw.headers["etag"]},
    )
    assert cached.status_code == 304
    npy = client.get("/p/demo/a/classifier/v/v0/files/model.npy").text
    assert 'id="preview-columns"' in npy and "&lt;f8" in npy  # shape and dtype, from the header


def test_large_csv_preview_reads_only_the_start(fresh: Any, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    big_csv(path, rows=150_000)  # ~6 MiB: stored as a chunk list and chunks
    size = path.stat().st_size
    assert size > 5 << 20
    with cairn.init(project="p") as run:
        art = cairn.Artifact("table", type="dataset")
        art.add_file(path)
        run.log_artifact(art)
    client, store = client_for(fresh)
    store.reset()
    r = client.get("/p/p/a/table/v/v0/files/big.csv")
    assert r.status_code == 200
    assert "<th>split</th>" in r.text and "sample number 99" in r.text
    assert "sample number 100<" not in r.text  # the first 100 rows only
    assert r.text.count("<tr>") == 101
    assert "The first 100 rows" in text(r)
    assert store.bytes_read < 3 << 20, "the preview read more than the file's first chunk"

    # a download streams the whole file, chunk by chunk
    store.reset()
    raw = client.get("/p/p/a/table/v/v0/raw/big.csv?download=1")
    assert raw.content == path.read_bytes()
    assert raw.headers["content-length"] == str(size)
    assert raw.headers["content-disposition"] == "attachment; filename*=UTF-8''big.csv"
    assert raw.headers["content-type"] == "application/octet-stream"
    assert len(store.reads) > 5  # chunk list + chunks, not one blob


def _commit_tree(backend: Any, files: dict[str, bytes], name: str = "wide") -> Any:
    """Store the objects of a version with these files and record it (no run)."""
    entries = []
    for path, data in files.items():
        digest = hash_bytes(data)
        backend.object_store.put(digest, data)
        entries.append(tree.FileEntry(path, digest, len(data)))
    built = tree.build(entries)
    for digest, body in built.objects.items():
        backend.object_store.put(digest, body)
    backend.object_store.sync()
    info, _ = backend.registry.commit_version(
        "p", name, "dataset", digest=built.root, size=built.size, file_count=built.file_count
    )
    return info


def test_wide_folder_pages_read_only_their_pages(fresh: Any) -> None:
    files = {f"big/file-{i:05d}.txt": b"%d\n" % i for i in range(20_000)}
    files["README.md"] = b"# Wide\n"
    _commit_tree(fresh, files)
    client, store = client_for(fresh)

    store.reset()
    r = client.get("/p/p/a/wide/v/v0/files/big?offset=15000")
    assert r.status_code == 200
    page = text(r)
    assert "15001-15100 of 20000" in page
    assert "file-15000.txt" in page and "file-15099.txt" in page
    assert "file-14999.txt" not in page and "file-15100.txt" not in page
    # root, the folder's page index, and the one or two pages holding entries 15000..15099
    assert len(store.reads) <= 4, store.reads

    store.reset()
    r = client.get("/p/p/a/wide/v/v0/files/big?start=file-19990")
    assert "19991-20000 of 20000" in text(r)
    assert len(store.reads) <= 5

    store.reset()
    r = client.get("/p/p/a/wide/v/v0/files/big/file-12345.txt")
    assert "12345" in text(r)
    assert len(store.reads) <= 4  # root, index, one page, the blob


def test_ten_thousand_versions_page(fresh: Any) -> None:
    """Every page of a 10,000-version artifact answers (their timing is in bench/limits.py)."""
    from cairn.metadata.tables import Version

    first, _ = fresh.registry.commit_version(
        "p", "many", "dataset", digest="blake3:" + "0" * 64, size=1, file_count=1
    )
    with fresh.registry.engine.begin() as conn:
        artifact_id = conn.scalar(sa.select(Version.artifact_id).where(Version.id == first.id))
        now = datetime.now(UTC)
        conn.execute(
            sa.insert(Version.__table__),
            [
                {
                    "artifact_id": artifact_id,
                    "version": n,
                    "digest": f"blake3:{n:064x}",
                    "size": n,
                    "file_count": 1,
                    "description": "",
                    "metadata": {},
                    "created_at": now,
                    "run_id": None,
                    "state": "committed",
                }
                for n in range(1, 10_000)
            ],
        )
    client, _ = client_for(fresh)
    top = client.get("/p/p/a/many")
    assert "1-50 of 10000" in text(top)
    assert ">v9999<" in top.text and ">v9950<" in top.text and ">v9949<" not in top.text
    deep = client.get("/p/p/a/many?offset=9950")
    assert ">v49<" in deep.text and ">v0<" in deep.text and 'rel="next"' not in deep.text
    assert client.get("/p/p").status_code == 200
    assert "many:v5000" in text(client.get("/p/p/a/many/v/v5000"))
    assert client.get("/p/p/a/many/v/v5000/usage").status_code == 200


# --- compare, lineage, storage ---------------------------------------------------------------


def test_compare(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/p/demo/a/samples/v/v1/compare?with=v0")
    page = text(r)
    assert "1 added" in page and "1 removed" in page and "2 changed" in page
    assert "images/dogs/dog-1.png" in page and "many/item-0000.txt" in page
    assert "labels.tsv" in page and "config.json" in page
    assert "variant" in page  # metadata: 1 -> 2
    assert re.search(r"variant\s*</td>\s*<td class=\"old\">1</td>\s*<td class=\"new\">2<", r.text)
    # without ?with=, the previous version
    assert "1 added" in text(client.get("/p/demo/a/samples/v/v1/compare"))
    assert "first version" in text(client.get("/p/demo/a/samples/v/v0/compare"))
    same = client.get("/p/demo/a/samples/v/v1/compare?with=latest")
    assert "Same files" in text(same)


def test_lineage_page_groups_fan_outs(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/p/demo/a/training-data/v/v1/lineage")
    assert r.status_code == 200
    # the 12 sweep runs that used it are one group, named by their job type; the fine-tuning
    # run that used it too stays in view
    assert f"{FAN_OUT} sweep runs" in r.text and ">fine-tuning<" in r.text
    group = re.search(r'href="([^"]*expand=(g[0-9a-f]+))"', r.text)
    assert group
    href = group.group(1).replace("&amp;", "&")
    expanded = client.get(href)
    assert expanded.text.count('data-kind="run"') >= FAN_OUT + 1
    assert f"{FAN_OUT} sweep runs</text>" not in expanded.text
    assert f"{FAN_OUT} sweep runs \u00d7" in text(expanded)  # the expanded group, in words
    up = client.get("/p/demo/a/training-data/v/v1/lineage?direction=up&depth=1")
    assert up.text.count('data-kind="run"') == 1 and "runs</text>" not in up.text


def test_storage_counts_shared_bytes_once(fresh: Any) -> None:
    shared = bytes(range(256)) * 40
    a = _commit_tree(fresh, {"a.txt": b"a" * 1000, "shared.bin": shared}, "first")
    _commit_tree(fresh, {"b.txt": b"b" * 300, "shared.bin": shared}, "second")
    report = StorageIndex().report(fresh.registry, fresh.object_store)
    first, second = report.by_key[("p", "first")], report.by_key[("p", "second")]
    root_a = len(fresh.object_store.get(a.digest))
    assert first.held == 1000 + len(shared) + root_a
    assert first.exclusive == 1000 + root_a  # the shared file stays if "first" goes
    assert second.exclusive == second.held - len(shared)
    assert report.total == first.exclusive + second.exclusive + len(shared)
    assert report.logical == 1000 + 300 + 2 * len(shared)
    client, _ = client_for(fresh)
    page = text(client.get("/p/p/storage"))
    assert "first" in page and "second" in page and "Only it holds" in page


def test_the_storage_report_is_cached_until_a_version_is_logged_or_deleted(fresh: Any) -> None:
    shared = bytes(range(256)) * 40
    _commit_tree(fresh, {"a.txt": b"a" * 1000, "shared.bin": shared}, "first")
    second = _commit_tree(fresh, {"b.txt": b"b" * 300, "shared.bin": shared}, "second")
    index = StorageIndex()
    report = index.report(fresh.registry, fresh.object_store)
    assert (
        index.report(fresh.registry, fresh.object_store) is report
    )  # unchanged: not computed again
    client, _ = client_for(fresh)
    assert "2 live versions" in text(client.get("/p/p/storage"))
    # a new version: the report (and the page, from the same dashboard) counts it
    _commit_tree(fresh, {"a.txt": b"a" * 1000, "c.txt": b"c" * 5000}, "first")
    after_log = index.report(fresh.registry, fresh.object_store)
    assert after_log is not report
    assert after_log.versions == 3 and after_log.by_key[("p", "first")].versions == 2
    assert after_log.by_key[("p", "first")].held > report.by_key[("p", "first")].held
    assert "3 live versions" in text(client.get("/p/p/storage"))
    # a deleted version: "second" holds nothing and the shared bytes are first's alone now
    fresh.registry.delete_version(second.id)
    after_delete = index.report(fresh.registry, fresh.object_store)
    assert after_delete.versions == 2
    gone = after_delete.by_key[("p", "second")]
    assert (gone.versions, gone.held, gone.exclusive) == (0, 0, 0)
    first = after_delete.by_key[("p", "first")]
    assert first.exclusive == first.held
    assert "2 live versions" in text(client.get("/p/p/storage"))


# --- editing -----------------------------------------------------------------------------------


def _two_versions(tmp_path: Path) -> None:
    for i in (0, 1):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}\n")
        with cairn.init(project="p") as run:
            art = cairn.Artifact("data", type="dataset", description="old text")
            art.add_file(tmp_path / f"f{i}.txt", name="f.txt")
            run.log_artifact(art, aliases=["best"] if i == 0 else [])


def test_edit_description_aliases_tags(fresh: Any, tmp_path: Path) -> None:
    _two_versions(tmp_path)
    client, _ = client_for(fresh)
    url = "/p/p/a/data/v/v1"
    r = client.post(url + "/description", data={"description": "**new** text"}, headers=ORIGIN)
    assert r.status_code == 200  # after the redirect
    assert "<strong>new</strong> text" in r.text and "Description saved." in r.text
    assert "Description saved." not in client.get(url).text  # the notice shows once

    r = client.post(url + "/aliases", data={"alias": "best"}, headers=ORIGIN)
    assert "moved from v0 to v1" in text(r)
    assert fresh.registry.resolve("p", "data", "best").version == 1
    client.post(url + "/aliases", data={"alias": "prod"}, headers=ORIGIN)
    r = client.post(url + "/aliases", data={"alias": "best", "action": "remove"}, headers=ORIGIN)
    assert "removed" in text(r)
    assert fresh.registry.resolve("p", "data", "v1").aliases == ["latest", "prod"]
    r = client.post(url + "/aliases", data={"alias": "v7"}, headers=ORIGIN)
    assert "Could not set alias" in text(r)

    client.post(url + "/tags", data={"tag": "golden"}, headers=ORIGIN)
    assert fresh.registry.resolve("p", "data", "v1").tags == ["golden"]
    client.post(url + "/tags", data={"tag": "golden", "action": "remove"}, headers=ORIGIN)
    assert fresh.registry.resolve("p", "data", "v1").tags == []

    history = text(client.get(url + "/history"))
    assert "description" in history and "**new** text" in history and "old text" in history
    assert "aliases" in history and "tags" in history

    # a form posted from another site changes nothing
    r = client.post(url + "/description", data={"description": "evil"})
    assert r.status_code == 403
    r = client.post(
        url + "/description", data={"description": "evil"}, headers={"origin": "http://evil"}
    )
    assert r.status_code == 403
    assert fresh.registry.resolve("p", "data", "v1").description == "**new** text"


def test_markdown_is_escaped(fresh: Any, tmp_path: Path) -> None:
    _two_versions(tmp_path)
    client, _ = client_for(fresh)
    evil = "<script>alert(1)</script> [x](javascript:alert(1))"
    client.post("/p/p/a/data/v/v0/description", data={"description": evil}, headers=ORIGIN)
    page = client.get("/p/p/a/data/v/v0").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
    assert 'href="javascript:' not in page


# --- signing in and permissions ------------------------------------------------------------------


def signed_in(backend: Any, key: str) -> TestClient:
    client, _ = client_for(backend, StubAccess())
    r = client.post("/login", data={"key": key, "next": "/"}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    return client


def test_sign_in_and_roles(fresh: Any, tmp_path: Path) -> None:
    _two_versions(tmp_path)
    client, _ = client_for(fresh, StubAccess())
    r = client.get("/p/p?q=x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fp%2Fp%3Fq%3Dx"
    r = client.post("/login", data={"key": "wrong", "next": "/p/p"}, headers=ORIGIN)
    assert r.status_code == 401 and "not valid" in r.text
    r = client.post(
        "/login", data={"key": "key-bob", "next": "//evil.example/"}, headers=ORIGIN,
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()

    bob = signed_in(fresh, "key-bob")
    assert 'href="/p/p"' in bob.get("/").text
    page = bob.get("/p/p/a/data/v/v1").text
    assert "bob" in page
    assert "description-form" not in page and 'name="alias"' not in page  # read only
    r = bob.post("/p/p/a/data/v/v1/description", data={"description": "x"}, headers=ORIGIN)
    assert r.status_code == 403 and "read access" in r.text
    assert fresh.registry.resolve("p", "data", "v1").description == "old text"

    carol = signed_in(fresh, "key-carol")
    assert 'href="/p/p"' not in carol.get("/").text
    assert carol.get("/p/p").status_code == 404
    assert carol.get("/p/p/a/data/v/v1/raw/f.txt").status_code == 404

    dave = signed_in(fresh, "key-dave")
    assert "description-form" in dave.get("/p/p/a/data/v/v1").text
    dave.post("/p/p/a/data/v/v1/description", data={"description": "by dave"}, headers=ORIGIN)
    entry = fresh.registry.history(fresh.registry.resolve("p", "data", "v1").id)[-1]
    assert entry.new == "by dave" and entry.user == "dave"

    r = dave.post("/logout", headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    assert dave.get("/", follow_redirects=False).status_code == 303


def test_open_mode_has_no_sign_in(seeded: Any) -> None:
    client, _, _ = seeded
    r = client.get("/login?next=/p/demo", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/p/demo"
    assert "open mode" in client.get("/").text


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        (100, "All 100 rows."),
        (101, "The first 100 of 101 rows."),
        (1_600, "The first 100 of 1,600 rows."),
        (2_858, "The first 100 of 2,858 rows."),
    ],
)
def test_csv_preview_counts_the_rows_of_a_complete_file(
    fresh: Any, tmp_path: Path, rows: int, says: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("i,sq\n" + "".join(f"{i},{i * i}\n" for i in range(rows)))
    with cairn.init(project="p") as run:
        art = cairn.Artifact("table", type="dataset")
        art.add_file(path)
        run.log_artifact(art)
    client, _store = client_for(fresh)
    page = text(client.get("/p/p/a/table/v/v0/files/t.csv"))
    assert says in page
