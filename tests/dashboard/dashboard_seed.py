"""Test data for the dashboard: the demo pipeline (cairn.demo.run_demo) plus a fan-out of
runs, a dataset with folders, images, a large CSV and a folder of many files."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import cairn
from cairn.demo import run_demo

PROJECT = "demo"
FAN_OUT = 12  # runs that use training-data:v1 (collapsed into a group in the lineage)
MANY = 130  # files in samples/many (more than a page of 100)
BIG_ROWS = 120_000  # rows of the large CSV (about 7 MiB: chunked)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small solid-colour PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def big_csv(path: Path, rows: int = BIG_ROWS) -> None:
    with path.open("w") as f:
        f.write("id,split,score,label,text\n")
        for i in range(rows):
            f.write(f"{i},{'train' if i % 5 else 'test'},{(i * 7919) % 1000 / 1000:.3f},")
            f.write(f"{i % 3},sample number {i}\n")


def make_samples(folder: Path, variant: int) -> None:
    (folder / "images" / "cats").mkdir(parents=True, exist_ok=True)
    (folder / "images" / "dogs").mkdir(parents=True, exist_ok=True)
    (folder / "many").mkdir(exist_ok=True)
    (folder / "images" / "cats" / "cat-0.png").write_bytes(png(64, 48, (220, 120, 40)))
    (folder / "images" / "dogs" / "dog-0.png").write_bytes(png(48, 64, (40, 120, 220)))
    for i in range(MANY):
        (folder / "many" / f"item-{i:04d}.txt").write_text(f"item {i}\n")
    big_csv(folder / "big.csv")
    (folder / "labels.tsv").write_text("id\tlabel\n1\tcat\n2\tdog\n")
    (folder / "config.json").write_text(json.dumps({"classes": ["cat", "dog"], "version": variant}))
    (folder / "NOTES.md").write_text("# Samples\n\n* cats\n* dogs\n")
    if variant == 2:
        (folder / "images" / "dogs" / "dog-1.png").write_bytes(png(32, 32, (10, 200, 90)))
        (folder / "labels.tsv").write_text("id\tlabel\n1\tcat\n2\tdog\n3\tdog\n")
        (folder / "many" / "item-0000.txt").unlink()


TRAIN_PY = """import cairn

def main():
    with cairn.init(project="demo", job_type="training") as run:
        data = run.use_artifact("training-data:latest")
        lr = 0.1
"""


def make_repo(work: Path) -> bool:
    """Make ``work`` a git repository with one commit and an uncommitted change (runs started
    there record the commit, the dirty flag and the diff). False when git is missing."""
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": os.environ.get("PATH", ""), "HOME": str(work),
    }  # fmt: skip
    (work / "train.py").write_text(TRAIN_PY)
    try:
        for args in (["init", "-q"], ["add", "train.py"], ["commit", "-q", "-m", "first"]):
            subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    (work / "train.py").write_text(TRAIN_PY.replace("lr = 0.1", "lr = 0.2  # try a larger step"))
    return True


def seed(work: Path) -> None:
    """Run the demo pipeline and log more into the current CAIRN_DIR (runs started in the
    current folder)."""
    run_demo(PROJECT, rows=400)
    for i in range(FAN_OUT):
        with cairn.init(project=PROJECT, job_type="sweep", config={"trial": i}) as run:
            run.use_artifact("training-data:v1")
            run.summary["score"] = i / 10
    for variant in (1, 2):
        folder = work / "data" / f"samples-{variant}"
        make_samples(folder, variant)
        with cairn.init(project=PROJECT, job_type="collect") as run:
            art = cairn.Artifact(
                "samples",
                type="dataset",
                description=f"Pet images, variant {variant}.",
                metadata={"variant": variant, "source": {"site": "example", "year": 2024}},
            )
            art.add_dir(folder)
            run.log_artifact(art)
