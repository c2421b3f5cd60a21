"""Merging parts' trees (distributed versions): the merge is the tree one process builds from
the same files, whatever the cuts, and a folder of many thousands of entries cut across parts is
merged a page at a time, not held whole."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from cairn.core.digest import hash_bytes
from cairn.errors import PartConflictError
from cairn.objects import tree, treemerge
from cairn.objects.tree import FileEntry


def _entry(path: str) -> FileEntry:
    return FileEntry(path, hash_bytes(path.encode()), len(path))


def _parts(
    entries: list[FileEntry], cuts: list[int]
) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """Each run of ``entries`` between the cuts built as a part's tree; (parts, objects)."""
    objects: dict[str, bytes] = {}
    parts = []
    for i, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(entries)], strict=True)):
        built = tree.build(entries[start:end])
        objects.update(built.objects)
        parts.append((str(i), built.root))
    return parts, objects


def test_the_merge_is_the_tree_of_all_files_whatever_the_cuts() -> None:
    paths = sorted(
        [f"flat/{i:06d}.bin" for i in range(12_000)]  # paged: more than MAX_ENTRIES
        + [f"a/b/c/{i:03d}" for i in range(50)]  # nested folders cut across parts
        + [f"a/b/{i:03d}" for i in range(30)]
        + ["a/top.txt", "z.txt"],
        key=lambda p: p.split("/"),
    )
    entries = [_entry(p) for p in paths]
    whole = tree.build(entries)
    for cuts in ([1], [20, 45, 3_000, 7_777, 11_000], [len(entries) // 2], list(range(1, 90, 7))):
        parts, objects = _parts(entries, cuts)
        merged = treemerge.merge(parts, objects.__getitem__)
        try:
            assert (merged.root, merged.size, merged.file_count) == (
                whole.root,
                whole.size,
                whole.file_count,
            )
            # the objects the merge wrote are the whole tree's, children before parents
            bodies = list(merged.bodies())
            assert [d for d, _ in bodies] == merged.digests
            assert merged.digests[-1] == merged.root
            for at, (digest, body) in enumerate(bodies):
                assert whole.objects[digest] == body
                for link in tree.children(body):
                    if link.kind == "tree":
                        assert link.digest in objects or link.digest in merged.digests[:at]
        finally:
            merged.close()


def test_interleaved_parts_merge_to_the_same_tree() -> None:
    # parts need not be contiguous (a user's own split: every third file to each worker)
    entries = [_entry(f"flat/{i:06d}") for i in range(9_000)] + [_entry("z/1"), _entry("z/2")]
    objects: dict[str, bytes] = {}
    parts = []
    for i in range(3):
        built = tree.build(entries[i::3])
        objects.update(built.objects)
        parts.append((str(i), built.root))
    merged = treemerge.merge(parts, objects.__getitem__)
    merged.close()
    assert merged.root == tree.build(entries).root and merged.file_count == 9_002


def test_the_same_file_in_two_parts_is_one_file_and_different_content_is_named() -> None:
    a = [_entry("d/x"), _entry("d/y")]
    b = [_entry("d/y"), _entry("d/z")]
    parts, objects = _parts(a + b, [2])
    merged = treemerge.merge(parts, objects.__getitem__)
    merged.close()
    assert merged.root == tree.build([a[0], a[1], b[1]]).root
    other = FileEntry("d/y", hash_bytes(b"other"), 5)
    parts, objects = _parts([*a, other], [2])
    with pytest.raises(PartConflictError, match=r"'d/y' has different content in parts '0', '1'"):
        treemerge.merge(parts, objects.__getitem__)


@pytest.mark.parametrize("parts", [8, 100])
def test_a_wide_folder_cut_across_parts_is_merged_in_little_memory(parts: int) -> None:
    # 100,000 names in one folder: held whole, the merge took ~65 MiB here; in 100 parts each
    # part's folder is one object of 1,000 entries, read only when the merge reaches it
    entries = [
        FileEntry(f"{i:08d}.bin", hash_bytes(str(i).encode()), i % 900) for i in range(100_000)
    ]
    whole_root = tree.build(entries).root
    cut = 100_000 // parts
    sources, objects = _parts(entries, [cut * k for k in range(1, parts)])
    del entries
    tracemalloc.start()
    try:
        merged = treemerge.merge(sources, objects.__getitem__)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert merged.root == whole_root
        index = json.loads(dict(merged.bodies())[merged.root])
        assert index["cairn"] == "pages" and sum(p["k"] for p in index["pages"]) == 100_000
    finally:
        merged.close()
    assert peak < 16 * 2**20, f"the merge held {peak / 2**20:.1f} MiB"
