"""Rich previews in the dashboard, in real Chromium: Parquet, Arrow/Feather, .npy/.npz,
safetensors (header only), an image folder's gallery, an audio player; large files previewed from
byte ranges (checked by counting the bytes read from the store)."""

from __future__ import annotations

import io
import json
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from dashboard_helpers import LiveServer, open_backend
from dashboard_seed import png

from cairn.dashboard import create_dashboard_app, previews
from cairn.objects import tree

BIG_ROWS = 400_000  # ~25 MiB of Parquet in 8 row groups: chunked, read from byte ranges


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], pad: int = 0) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = {"F32": 4, "F16": 2, "I64": 8}
    for name, (dtype, shape) in tensors.items():
        n = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    body = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(body)) + body)
        f.write(np.random.default_rng(1).bytes(offset + pad))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import cairn
    from cairn.sdk.backend import reset_backends

    root = tmp_path_factory.mktemp("previews")
    src = root / "src"
    (src / "images").mkdir(parents=True)
    table = pa.table(
        {
            "id": pa.array(range(1000)),
            "score": pa.array([None if i % 10 == 0 else i / 4 for i in range(1000)]),
            "label": pa.array(["cat" if i % 2 else "dog" for i in range(1000)]),
        }
    )
    pq.write_table(table, src / "table.parquet", row_group_size=250)
    feather.write_feather(table, src / "table.feather")
    rng = np.random.default_rng(0)
    big = pa.table({f"c{i}": rng.random(BIG_ROWS) for i in range(8)})
    pq.write_table(big, src / "big.parquet", row_group_size=BIG_ROWS // 8, compression="none")
    np.save(src / "weights.npy", np.zeros((3, 4), dtype=np.float32))
    np.savez(src / "arrays.npz", a=np.arange(10), b=np.ones((2, 5, 7)))
    # a header that is code, not a literal: must never be evaluated
    evil = b"{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (1,)}"
    (src / "evil.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(evil)) + evil)
    _safetensors(
        src / "model.safetensors",
        {"embed.weight": ("F32", [1000, 512]), "head.bias": ("F16", [1000])},
        pad=8 << 20,  # a large file: chunked
    )
    for i, rgb in enumerate([(255, 0, 0), (0, 160, 0), (0, 0, 255)]):
        (src / "images" / f"img{i}.png").write_bytes(png(16, 16, rgb))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000)
    (src / "sound.wav").write_bytes(buf.getvalue())
    (src / "fake.parquet").write_bytes(b"this is not parquet at all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_DIR", str(root / "home"))
        mp.setenv("CAIRN_QUIET", "1")
        for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_API_KEY", "CAIRN_STORE"):
            mp.delenv(var, raising=False)
        reset_backends()
        with cairn.init(project="prev", save_code=False) as run:
            run.log_artifact(str(src), name="media", type="dataset")
        reset_backends()
    yield root / "home"


@pytest.fixture(scope="module")
def live(home: Path) -> Iterator[LiveServer]:
    backend = open_backend(home)
    with LiveServer(create_dashboard_app(backend)) as server:
        server.backend = backend  # type: ignore[attr-defined]
        yield server
    backend.close()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 860})
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


FILES = "/p/prev/a/media/v/v0/files"


def _cells(page: Any, table: str) -> list[list[str]]:
    rows = page.locator(f"#{table} tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_parquet_schema_rows_nulls_and_ranges(page: Any) -> None:
    page.goto(f"{FILES}/table.parquet")
    facts = page.locator(".facts-table").inner_text()
    assert "1,000" in facts and "row groups" in facts
    columns = {r[0]: r for r in _cells(page, "preview-columns")}
    assert columns["id"][1:] == ["int64", "0", "0", "999"]
    assert columns["score"][2] == "100"  # nulls, summed over the four row groups
    assert columns["score"][3:] == ["0.25", "249.75"]
    assert columns["label"][3:] == ["cat", "dog"]
    first = _cells(page, "preview-rows")
    assert len(first) == 20 and first[0][:3] == ["1", "0", "null"] and first[1][2] == "0.25"


def test_feather_npy_npz_safetensors(page: Any) -> None:
    page.goto(f"{FILES}/table.feather")
    columns = {r[0]: r for r in _cells(page, "preview-columns")}
    assert columns["score"][2:] == ["100", "0.25", "249.75"]
    expect(page.locator(".facts-table")).to_contain_text("1,000")

    page.goto(f"{FILES}/weights.npy")
    assert _cells(page, "preview-columns")[0][1:4] == ["<f4", "(3, 4)", "12"]

    page.goto(f"{FILES}/arrays.npz")
    arrays = {r[0]: r for r in _cells(page, "preview-columns")}
    assert arrays["a"][2:4] == ["(10,)", "10"] and arrays["b"][2:4] == ["(2, 5, 7)", "70"]

    page.goto(f"{FILES}/model.safetensors")
    tensors = {r[0]: r for r in _cells(page, "preview-columns")}
    assert tensors["embed.weight"][1:] == ["F32", "(1000, 512)", "512,000"]
    assert tensors["head.bias"][1:] == ["F16", "(1000,)", "1,000"]
    expect(page.locator(".facts-table")).to_contain_text("513,000")
    expect(page.locator(".preview")).to_contain_text("the weights were not read")


def test_bad_files_get_a_note_not_an_error(page: Any) -> None:
    page.goto(f"{FILES}/evil.npy")
    expect(page.locator(".preview-note")).to_contain_text("not a literal")
    page.goto(f"{FILES}/fake.parquet")
    expect(page.locator(".preview-note")).to_contain_text("not a readable Parquet file")


def test_gallery_and_audio(page: Any) -> None:
    page.goto(f"{FILES}/images")
    thumbs = page.locator("#gallery img")
    expect(thumbs).to_have_count(3)
    # the browser decoded each image (served inline from the raw route)
    widths = [thumbs.nth(i).evaluate("img => img.naturalWidth") for i in range(3)]
    assert widths == [16, 16, 16]
    page.goto(f"{FILES}/sound.wav")
    audio = page.locator("audio.audio-preview")
    expect(audio).to_have_count(1)
    page.wait_for_function("document.querySelector('audio').readyState >= 1")
    assert abs(audio.evaluate("a => a.duration") - 1.0) < 0.01


def test_large_files_are_previewed_from_byte_ranges(live: LiveServer, page: Any) -> None:
    backend = live.backend  # type: ignore[attr-defined]
    version = backend.registry.resolve("prev", "media", "v0")

    def entry(path: str) -> tree.File:
        found = tree.lookup(version.digest, path, backend.object_store.get)
        assert isinstance(found, tree.File)
        return found

    big = entry("big.parquet")
    assert big.chunks and big.size > 20 << 20  # chunked
    found = previews.rich_preview(backend.object_store, "parquet", big)
    # the footer and the first of 8 row groups, not the whole file
    assert found["facts"][0] == ("rows", f"{BIG_ROWS:,}")
    assert 0 < found["fetched"] < big.size // 3
    page.goto(f"{FILES}/big.parquet")
    expect(page.locator("#preview-rows tbody tr")).to_have_count(20)

    weights = entry("model.safetensors")
    assert weights.chunks
    found = previews.rich_preview(backend.object_store, "safetensors", weights)
    assert ("parameters", "513,000") in found["facts"]
    assert found["fetched"] <= 2 << 20  # the first chunk: the header, none of the weights
