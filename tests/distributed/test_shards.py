"""Cutting a file list into shards, and finding a shard's files in a stored tree (no cluster)."""

from __future__ import annotations

import itertools

import pytest

from cairn.core.digest import hash_bytes
from cairn.distributed import shard
from cairn.distributed.driver import _cut, shard_count
from cairn.distributed.tasks import files_in_range
from cairn.objects import tree

pytestmark = pytest.mark.parametrize("backend_mode", ["sqlite"])  # no backend needed

PATHS = sorted(
    ["a-b", "a.txt", "a0", "b/c", "a/x", "a/y/z", "a/y-1", "a/y/0", "b-", "c/d/e/f", "é/1"]
    + [f"wide/{i:05d}" for i in range(5000)]  # a folder cut into pages
)


def test_shards_are_contiguous_and_cover_everything(backend_mode: str) -> None:
    items = list(range(10))
    assert shard(items, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert shard(items, 20) == [[i] for i in items]
    assert shard([], 4) == []
    assert shard(items, 0) == [items]


def test_shard_counts_keep_workers_and_the_driver_bounded(backend_mode: str) -> None:
    # a small folder: four shards a worker, never more shards than files
    assert shard_count(1_000, 8, 2) == 8
    assert shard_count(3, 8, 2) == 3
    assert shard_count(0, 8, 2) == 0
    # a million files on two workers: at most 50,000 files a shard (a worker's records)
    assert shard_count(1_000_000, 8, 2) == 20
    # on 100 workers, 200 shards are in flight: at most 2,000 files each (400,000 in all)
    assert shard_count(10_000_000, 400, 100) == 5_000
    # a count the user chose is kept
    assert shard_count(1_000_000, 5, 2, capped=False) == 5


@pytest.mark.parametrize(("total", "count"), [(9, 4), (100, 40), (10, 3), (7, 7), (1, 1)])
def test_shards_are_cut_as_asked_one_at_a_time(backend_mode: str, total: int, count: int) -> None:
    pieces = list(_cut(iter(range(total)), total, count))
    assert pieces == shard(list(range(total)), count)  # exactly the count asked for
    assert len(pieces) == count
    # files found beyond the count (made since) go in more shards; fewer end the cut early
    assert [x for p in _cut(iter(range(total + 5)), total, count) for x in p] == list(
        range(total + 5)
    )
    assert [x for p in _cut(iter(range(total - 1)), total, count) for x in p] == list(
        range(total - 1)
    )


def test_files_in_a_range_of_paths(backend_mode: str) -> None:
    built = tree.build([tree.FileEntry(p, hash_bytes(p.encode()), 1) for p in PATHS])
    load = built.objects.__getitem__
    assert [p for p, _ in tree.iter_files(built.root, load)] == PATHS  # the order shards use
    bounds = [p for i, p in enumerate(PATHS) if i % 397 == 0 or i < 14] + [PATHS[-1]]
    for first, last in itertools.combinations_with_replacement(bounds, 2):
        found = sorted(p for p, _ in files_in_range(built.root, load, first, last))
        assert found == [p for p in PATHS if first <= p <= last], (first, last)
