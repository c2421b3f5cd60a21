"""Merkle trees of directory objects: what goes in comes out, digests cover exactly the
paths, sizes and contents, diff reads only what differs, and wide directories are paged."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cairn.core.digest import hash_bytes
from cairn.errors import InvalidPathError
from cairn.objects import tree
from cairn.objects.tree import BuiltTree, FileEntry

# --- helpers ----------------------------------------------------------------------------------


class Loader:
    """A load function over built objects that counts what it reads."""

    def __init__(self, *builts: BuiltTree) -> None:
        self.objects: dict[str, bytes] = {}
        for b in builts:
            self.objects.update(b.objects)
        self.loaded: list[str] = []

    def __call__(self, digest: str) -> bytes:
        self.loaded.append(digest)
        return self.objects[digest]


def content(n: int) -> str:
    return hash_bytes(b"content %d" % n)


def entry(path: str, n: int, size: int, chunked: bool = False) -> FileEntry:
    # a chunked file's chunk list is a function of its content, as in the real store
    return FileEntry(path, content(n), size, hash_bytes(b"chunks %d" % n) if chunked else None)


def drop_clashes(paths: Iterable[str]) -> list[str]:
    """Leave out every path that is also a folder of another path (a file and a folder)."""
    ps = set(paths)
    folders = {"/".join(p.split("/")[:i]) for p in ps for i in range(1, p.count("/") + 1)}
    return sorted(ps - folders)


def reachable(root: str, load: Loader) -> set[str]:
    """Every tree object below (and including) ``root``."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        todo.extend(references(load.objects[d]))
    return seen


def references(body: bytes) -> set[str]:
    """The tree objects an object points to, read from its bytes."""
    doc = json.loads(body)
    if doc["cairn"] == "pages":
        return {p["d"] for p in doc["pages"]}
    return {e["d"] for e in doc["entries"] if e["t"] == "d"}


def width(body: bytes) -> int:
    doc = json.loads(body)
    return len(doc["pages"] if doc["cairn"] == "pages" else doc["entries"])


def path_key(path: str, e: tree.Entry) -> str:
    return path + "/" if isinstance(e, tree.Dir) else path


# --- strategies -------------------------------------------------------------------------------

# short names over an alphabet with characters on both sides of '/' (0x2F) in sort order, so
# that 'a-b', 'a.b', 'a/...' and 'a0' all occur, and one non-ASCII letter
segment = st.text(alphabet="ab-.0_é", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
path_st = st.lists(segment, min_size=1, max_size=4).map("/".join)
file_st = st.tuples(st.integers(0, 30), st.integers(0, 10**12), st.booleans())


@st.composite
def file_sets(draw: st.DrawFn, min_size: int = 0, max_size: int = 40) -> dict[str, FileEntry]:
    paths = drop_clashes(draw(st.lists(path_st, min_size=min_size, max_size=max_size)))
    return {p: entry(p, *draw(file_st)) for p in paths}


SETTINGS = settings(max_examples=60, deadline=None)


# --- building and iterating -------------------------------------------------------------------


@SETTINGS
@given(files=file_sets(), rnd=st.randoms(use_true_random=False))
def test_iteration_yields_exactly_the_input_sorted(
    files: dict[str, FileEntry], rnd: random.Random
) -> None:
    entries = list(files.values())
    rnd.shuffle(entries)
    built = tree.build(entries)
    load = Loader(built)

    out = list(tree.iter_files(built.root, load))
    assert [p for p, _ in out] == sorted(files)
    for path, e in out:
        f = files[path]
        assert e.name == path.rsplit("/", 1)[-1]
        assert e == tree.File(e.name, f.digest, f.size, f.chunks)
    assert built.file_count == len(files)
    assert built.size == sum(f.size for f in files.values())

    # with the folders: each comes once, just before what it holds, with its totals
    everything = list(tree.iter_entries(built.root, load))
    keys = [path_key(p, e) for p, e in everything]
    assert keys == sorted(keys)
    folders = {p: e for p, e in everything if isinstance(e, tree.Dir)}
    assert set(folders) == {
        "/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)
    }
    for folder, e in folders.items():
        below = [f for p, f in files.items() if p.startswith(folder + "/")]
        assert e.count == len(below)
        assert e.size == sum(f.size for f in below)


@SETTINGS
@given(files=file_sets(), rnd=st.randoms(use_true_random=False))
def test_root_digest_does_not_depend_on_input_order(
    files: dict[str, FileEntry], rnd: random.Random
) -> None:
    entries = list(files.values())
    first = tree.build(entries)
    rnd.shuffle(entries)
    second = tree.build(entries)
    assert second.root == first.root
    assert second.objects == first.objects


@SETTINGS
@given(files=file_sets(min_size=1), data=st.data())
def test_any_change_to_a_file_changes_the_root(
    files: dict[str, FileEntry], data: st.DataObject
) -> None:
    root = tree.build(list(files.values())).root
    path = data.draw(st.sampled_from(sorted(files)))
    f = files[path]
    how = data.draw(st.sampled_from(["digest", "size", "rename", "remove", "add"]))
    changed = dict(files)
    if how == "digest":
        changed[path] = FileEntry(path, hash_bytes(f.digest.encode()), f.size, f.chunks)
    elif how == "size":
        changed[path] = FileEntry(path, f.digest, f.size + data.draw(st.integers(1, 10)), f.chunks)
    elif how == "remove":
        del changed[path]
    else:
        new_path = data.draw(path_st)
        # a new path that clashes with an existing one makes no valid tree
        assume(
            new_path not in files and drop_clashes([*files, new_path]) == sorted({*files, new_path})
        )
        if how == "rename":
            del changed[path]
        changed[new_path] = FileEntry(new_path, f.digest, f.size, f.chunks)
    assert tree.build(list(changed.values())).root != root


def test_empty_tree_and_single_file() -> None:
    empty = tree.build([])
    assert list(tree.iter_entries(empty.root, Loader(empty))) == []
    assert (empty.size, empty.file_count) == (0, 0)
    one = tree.build([entry("x.csv", 1, 5)])
    assert one.root != empty.root
    assert [p for p, _ in tree.iter_files(one.root, Loader(one))] == ["x.csv"]


@pytest.mark.parametrize(
    "paths",
    [
        ["a", "a/b"],  # a file and a folder at one path
        ["a/b", "a"],
        ["x/a", "x/a/b/c"],
        ["a", "a"],  # two files at one path
        ["a//b"],
        ["/a"],
        ["a/../b"],
        ["a/./b"],
        ["a/"],
        [""],
    ],
)
def test_build_refuses_paths_that_cannot_be_a_tree(paths: list[str]) -> None:
    with pytest.raises(InvalidPathError):
        tree.build([entry(p, i, 1) for i, p in enumerate(paths)])


# --- lookup -----------------------------------------------------------------------------------


@SETTINGS
@given(files=file_sets(min_size=1))
def test_lookup_finds_files_and_folders(files: dict[str, FileEntry]) -> None:
    built = tree.build(list(files.values()))
    load = Loader(built)
    for path, e in tree.iter_entries(built.root, load):
        assert tree.lookup(built.root, path, load) == e
    for path, f in files.items():
        found = tree.lookup(built.root, path, load)
        assert found is not None
        assert isinstance(found, tree.File) and (found.digest, found.size) == (f.digest, f.size)
        # below a file, or a name that is only a prefix of an entry, there is nothing
        assert tree.lookup(built.root, path + "/x", load) is None
        assert tree.lookup(built.root, path + "zz", load) is None
    assert tree.lookup(built.root, "no/such/path", load) is None


# --- diff -------------------------------------------------------------------------------------


def expected_changes(old: dict[str, FileEntry], new: dict[str, FileEntry]) -> list[tuple[str, str]]:
    out = []
    for p in sorted(old.keys() | new.keys()):
        if p not in new:
            out.append((p, "removed"))
        elif p not in old:
            out.append((p, "added"))
        elif (old[p].digest, old[p].size) != (new[p].digest, new[p].size):
            out.append((p, "modified"))
    return out


@st.composite
def tree_pairs(draw: st.DrawFn) -> tuple[dict[str, FileEntry], dict[str, FileEntry]]:
    old = draw(file_sets())
    if draw(st.booleans()):
        return old, draw(file_sets())  # unrelated trees
    # an edited copy: most subtrees stay identical
    new = dict(old)
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.sampled_from(["add", "remove", "modify"]))
        if what == "add" or not new:
            p = draw(path_st)
            new[p] = entry(p, *draw(file_st))
            new = {q: new[q] for q in drop_clashes(new)}
        elif what == "remove":
            del new[draw(st.sampled_from(sorted(new)))]
        else:
            p = draw(st.sampled_from(sorted(new)))
            new[p] = entry(p, *draw(file_st))
    return old, new


@SETTINGS
@given(pair=tree_pairs())
def test_diff_is_exactly_the_set_difference(
    pair: tuple[dict[str, FileEntry], dict[str, FileEntry]],
) -> None:
    old, new = pair
    a, b = tree.build(list(old.values())), tree.build(list(new.values()))
    load = Loader(a, b)
    changes = list(tree.diff(a.root, b.root, load))
    assert [(c.path, c.kind) for c in changes] == expected_changes(old, new)
    for c in changes:
        if c.old is not None:
            assert (c.old.digest, c.old.size) == (old[c.path].digest, old[c.path].size)
        if c.new is not None:
            assert (c.new.digest, c.new.size) == (new[c.path].digest, new[c.path].size)
    # the other way round, everything is mirrored
    back = [(c.path, c.kind) for c in tree.diff(b.root, a.root, load)]
    assert back == expected_changes(new, old)
    # against nothing: everything added or removed
    assert [(c.path, c.kind) for c in tree.diff(None, b.root, load)] == [
        (p, "added") for p in sorted(new)
    ]
    assert [(c.path, c.kind) for c in tree.diff(a.root, None, load)] == [
        (p, "removed") for p in sorted(old)
    ]
    load.loaded.clear()
    assert list(tree.diff(a.root, a.root, load)) == []
    assert load.loaded == []  # equal roots: nothing read at all


@SETTINGS
@given(shared=file_sets(min_size=1), old=file_sets(), new=file_sets())
def test_diff_never_reads_an_identical_subtree(
    shared: dict[str, FileEntry], old: dict[str, FileEntry], new: dict[str, FileEntry]
) -> None:
    # the same files under 'same/' in both trees; their contents occur nowhere else
    same = {
        f"same/{p}": FileEntry(f"same/{p}", hash_bytes(b"only here " + f.digest.encode()), f.size)
        for p, f in shared.items()
    }
    old_files = {**{p: f for p, f in old.items() if not p.startswith("same")}, **same}
    new_files = {**{p: f for p, f in new.items() if not p.startswith("same")}, **same}
    a, b = tree.build(list(old_files.values())), tree.build(list(new_files.values()))
    load = Loader(a, b)
    same_dir = tree.lookup(a.root, "same", load)
    assert same_dir is not None
    untouchable = reachable(same_dir.digest, load)
    load.loaded.clear()
    changes = list(tree.diff(a.root, b.root, load))
    assert [(c.path, c.kind) for c in changes] == expected_changes(old_files, new_files)
    assert not untouchable & set(load.loaded)


# --- wide directories -------------------------------------------------------------------------

WIDE = 20_000


def wide_names(n: int = WIDE) -> list[str]:
    return [f"img_{i:06d}.png" for i in range(n)]


@pytest.fixture(scope="module")
def wide() -> tuple[list[FileEntry], BuiltTree]:
    entries = [entry(f"data/{name}", i, 100 + i) for i, name in enumerate(wide_names())]
    entries.append(entry("README.md", -1, 10))
    return entries, tree.build(entries)


def test_wide_directory_is_split_into_bounded_pages(
    wide: tuple[list[FileEntry], BuiltTree],
) -> None:
    entries, built = wide
    load = Loader(built)
    data = tree.lookup(built.root, "data", load)
    assert isinstance(data, tree.Dir) and data.count == WIDE
    top = json.loads(built.objects[data.digest])
    assert top["cairn"] == "pages"
    assert len(top["pages"]) >= WIDE // tree.MAX_ENTRIES
    assert sum(p["k"] for p in top["pages"]) == WIDE
    for body in built.objects.values():
        assert width(body) <= tree.MAX_ENTRIES
    # the pages are in name order and start where they say
    firsts = [p["first"] for p in top["pages"]]
    assert firsts == sorted(firsts)
    for p in top["pages"]:
        assert json.loads(built.objects[p["d"]])["entries"][0]["n"] == p["first"]
    assert [p for p, _ in tree.iter_files(built.root, load)] == sorted(e.path for e in entries)


def test_lookup_in_a_wide_directory_reads_one_page(
    wide: tuple[list[FileEntry], BuiltTree],
) -> None:
    _, built = wide
    load = Loader(built)
    for i in (0, 1, 4095, 4096, 12_345, WIDE - 1):
        load.loaded.clear()
        found = tree.lookup(built.root, f"data/{wide_names()[i]}", load)
        assert found is not None and found.size == 100 + i
        assert len(load.loaded) <= 3  # root, the folder's page index, one page
    for missing in ("data/a", "data/img_0", "data/zzz", "data/img_999999.png"):
        assert tree.lookup(built.root, missing, load) is None


@settings(max_examples=5, deadline=None)
@given(name=st.text(alphabet="abimg_.0123456789p", min_size=1, max_size=16))
def test_inserting_one_name_in_a_wide_directory_changes_few_objects(
    wide: tuple[list[FileEntry], BuiltTree], name: str
) -> None:
    entries, built = wide
    assume(name not in wide_names() and name not in (".", ".."))
    after = tree.build([*entries, entry(f"data/{name}", 7, 7)])
    new_objects = set(after.objects) - set(built.objects)
    # the page the name lands in, the folder's page index and the root; a forced page cut
    # can move one more boundary
    assert len(new_objects) <= 4
    load = Loader(built, after)
    changes = list(tree.diff(built.root, after.root, load))
    assert [(c.path, c.kind) for c in changes] == [(f"data/{name}", "added")]
    assert len(load.loaded) <= 2 + 2 * 3  # two roots, two indexes, the differing pages


def test_removing_one_name_from_a_wide_directory_changes_few_objects(
    wide: tuple[list[FileEntry], BuiltTree],
) -> None:
    entries, built = wide
    after = tree.build([e for e in entries if e.path != "data/img_010000.png"])
    assert len(set(after.objects) - set(built.objects)) <= 4
    changes = list(tree.diff(built.root, after.root, Loader(built, after)))
    assert [(c.path, c.kind) for c in changes] == [("data/img_010000.png", "removed")]


def test_very_wide_directory_gets_index_pages_of_index_pages() -> None:
    # shrink the page size so that the index itself must be split (the same code path as a
    # directory of millions of entries)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tree, "MAX_ENTRIES", 8)
        mp.setattr(tree, "MIN_PAGE", 2)
        entries = [
            entry(f"d/n{i:04d}/f" if i % 3 == 0 else f"d/n{i:04d}", i, i) for i in range(600)
        ]
        built = tree.build(entries)
        load = Loader(built)
        for body in built.objects.values():
            assert width(body) <= 8
        d = tree.lookup(built.root, "d", load)
        assert isinstance(d, tree.Dir) and d.count == 600
        top = json.loads(built.objects[d.digest])
        assert top["cairn"] == "pages"
        assert json.loads(built.objects[top["pages"][0]["d"]])["cairn"] == "pages"
        assert sum(p["k"] for p in top["pages"]) == 600  # 'k' counts entries at every level
        assert [p for p, _ in tree.iter_files(built.root, load)] == sorted(e.path for e in entries)
        for e in entries[::37]:
            found = tree.lookup(built.root, e.path, load)
            assert found is not None and found.digest == e.digest
        # what writers rely on to store children first: `children` lists exactly what each
        # object points to, and every object is reachable from the root through it
        for digest, body in built.objects.items():
            assert set(built.children.get(digest, [])) == references(body)
        seen: set[str] = set()
        todo = [built.root]
        while todo:
            digest = todo.pop()
            if digest not in seen:
                seen.add(digest)
                todo.extend(built.children.get(digest, []))
        assert seen == set(built.objects)
        other = tree.build([*entries, entry("d/n0300a", 1, 1)])
        changes = list(tree.diff(built.root, other.root, Loader(built, other)))
        assert [(c.path, c.kind) for c in changes] == [("d/n0300a", "added")]


def test_children_list_exactly_what_each_object_points_to(
    wide: tuple[list[FileEntry], BuiltTree],
) -> None:
    entries, _ = wide
    # a wide folder whose pages hold subfolders, next to ordinary nested folders
    extra = [entry(f"data/sub{i:05d}/x", i, 1) for i in range(0, 6000, 7)]
    built = tree.build([*entries, *extra, entry("a/b/c", 1, 1)])
    for digest, body in built.objects.items():
        assert set(built.children.get(digest, [])) == references(body)


def raw_links(body: bytes) -> set[tuple[str, str, int]]:
    """What an object points to, decoded here from the format itself (independently of
    `tree.children`): (digest, kind, size of a blob)."""
    doc = json.loads(body)
    if doc["cairn"] == "pages":
        return {(p["d"], "tree", 0) for p in doc["pages"]}
    out = set()
    for e in doc["entries"]:
        if e["t"] == "d":
            out.add((e["d"], "tree", 0))
        elif e["t"] == "f":
            out.add((e["c"], "chunks", 0) if "c" in e else (e["d"], "blob", e["s"]))
    return out


def test_children_and_reachable_follow_every_link_once(
    wide: tuple[list[FileEntry], BuiltTree],
) -> None:
    from cairn.objects.references import make_entry

    entries, _ = wide
    more = [
        entry("m/chunked.bin", 1, 10 << 20, chunked=True),
        entry("m/again.bin", 1, 10 << 20, chunked=True),  # the same content twice
        make_entry("m/ref.csv", "s3://b/k.csv", 5, {"etag": "x"}),
        entry("m/deep/er/f", 2, 3),
    ]
    built = tree.build([*entries, *more])
    for body in built.objects.values():
        assert {(x.digest, x.kind, x.size) for x in tree.children(body)} == raw_links(body)
    load = Loader(built)
    seen: set[str] = set()
    walked = [(d, body) for d, body, _ in tree.reachable([built.root, built.root], load, seen)]
    assert sorted(d for d, _ in walked) == sorted(built.objects)  # every object, once
    assert all(built.objects[d] == body for d, body in walked)
    assert seen == set(built.objects)
    # what was seen is not walked again
    load.loaded.clear()
    assert list(tree.reachable([built.root], load, seen)) == [] and load.loaded == []
    # a reference points to nothing stored, and reads back typed
    ref = tree.lookup(built.root, "m/ref.csv", load)
    assert ref == tree.Ref("ref.csv", ref.digest if ref else "", 5, "s3://b/k.csv", {"etag": "x"})
    assert isinstance(ref, tree.Ref) and FileEntry.of("m/ref.csv", ref) == more[2]
    chunked = tree.lookup(built.root, "m/chunked.bin", load)
    assert isinstance(chunked, tree.File) and FileEntry.of("m/chunked.bin", chunked) == more[0]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"cairn": "chunks", "v": 1, "chunks": []}',
        b'{"cairn": "tree", "v": 1}',
        b'{"cairn": "tree", "v": 1, "entries": [{"n": "a", "t": "z", "d": "x", "s": 1}]}',
        b'{"cairn": "tree", "v": 1, "entries": [{"n": "a", "t": "d", "d": "x"}]}',
        b'{"cairn": "pages", "v": 1, "pages": [{"first": "a"}]}',
        b"\xff\xfe",
    ],
)
def test_parse_refuses_what_is_not_a_tree_object(body: bytes) -> None:
    with pytest.raises(ValueError):
        tree.parse(body)
    with pytest.raises(ValueError):
        tree.children(body)


def pinned_entries() -> list[FileEntry]:
    from cairn.objects.references import make_entry

    out = [FileEntry(f"wide/img_{i:05d}.png", hash_bytes(b"%d" % i), i) for i in range(9000)]
    out += [FileEntry(f"nested/d{i}/x/y/f{i}", hash_bytes(b"n%d" % i), i * 7) for i in range(30)]
    out.append(FileEntry("big.bin", hash_bytes(b"big"), 50 << 20, hash_bytes(b"chunks")))
    out.append(FileEntry('名前/é"q \u00e9\t.txt', hash_bytes(b"u"), 3))
    ref = make_entry("refs/a.csv", "s3://b/a.csv", 5, {"etag": "e", "version": "1"})
    return [*out, FileEntry("refs/a.csv", hash_bytes(b"r"), 5, ref=ref.ref)]


# (MAX_ENTRIES, root digest, distinct objects) of pinned_entries(), made by the tree code of 0971987
PINNED = [
    (4096, "6f1616702d9b44cfa1f06cfb052285180a24264fb7aaeb2160f5950c4b2cccd1", 102),
    (8, "2839ad05725f6da4d825aba72272f8bc4903441d51aff03e505404cb35588134", 1390),
    (4, "bd9b2b5b5a033623a8b79a06ea496600c04ca0b7760b240d1b81486500aceca8", 3112),
]


@pytest.mark.parametrize(("max_entries", "root", "objects"), PINNED)
def test_tree_digests_are_pinned(
    max_entries: int, root: str, objects: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-disk format never changes: these digests were made by the tree code of 0971987
    (wide folders with page indexes of page indexes, chunked files, references, non-ASCII and
    escaped names). A version logged once keeps its digest forever."""
    monkeypatch.setattr(tree, "MAX_ENTRIES", max_entries)
    monkeypatch.setattr(tree, "MIN_PAGE", 256 if max_entries == 4096 else 2)
    built = tree.build(pinned_entries())
    assert (built.root, len(built.objects)) == ("blake3:" + root, objects)
    assert (built.size, built.file_count) == (92927353, 9033)


def _written(entries: list[FileEntry]) -> tuple[str, int, int, dict[str, bytes]]:
    objects: dict[str, bytes] = {}
    writer = tree.TreeWriter(lambda digest, body, _refs: objects.setdefault(digest, body))
    for entry in sorted(entries, key=lambda e: e.path.split("/")):
        writer.add(entry)
    return (*writer.finish(), objects)


@pytest.mark.parametrize(("max_entries", "root", "objects"), PINNED)
def test_the_streaming_writer_pages_wide_folders_as_they_fill_into_the_pinned_digests(
    max_entries: int, root: str, objects: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wide folder's pages are written while its entries stream by (a million-entry folder
    holds one page in memory), into exactly the objects the whole-folder build makes."""
    monkeypatch.setattr(tree, "MAX_ENTRIES", max_entries)
    monkeypatch.setattr(tree, "MIN_PAGE", 256 if max_entries == 4096 else 2)
    written: list[str] = []
    held: list[int] = []
    entries = sorted(pinned_entries(), key=lambda e: e.path.split("/"))
    writer = tree.TreeWriter(lambda digest, _body, _refs: written.append(digest))
    for entry in entries:
        writer.add(entry)
        held.append(max((len(f.pending) for f in writer._open), default=0))
    top, size, count = writer.finish()
    assert (top, len(set(written)), size, count) == ("blake3:" + root, objects, 92927353, 9033)
    assert max(held) <= max_entries + 1  # never the 9,000 entries of the wide folder


@settings(max_examples=60, deadline=None)
@given(
    paths=st.sets(
        st.lists(st.sampled_from(["a", "b", "a.b", "a-", "é", "Z"]), min_size=1, max_size=4).map(
            "/".join
        ),
        max_size=40,
    )
)
def test_the_streaming_writer_makes_the_tree_build_makes(paths: set[str]) -> None:
    # keep paths that do not put a file where another path needs a folder
    kept = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    entries = [FileEntry(p, hash_bytes(p.encode()), len(p)) for p in kept]
    built = tree.build(entries)
    root, size, count, objects = _written(entries)
    assert (root, size, count) == (built.root, built.size, built.file_count)
    assert objects == built.objects


def test_the_streaming_writer_refuses_two_files_at_one_path_and_a_file_that_is_a_folder() -> None:
    d = hash_bytes(b"x")
    with pytest.raises(InvalidPathError, match="two files at one path: 'a/b'"):
        _written([FileEntry("a/b", d, 1), FileEntry("a/b", d, 1)])
    with pytest.raises(InvalidPathError, match="'a/b' is both a file and a folder"):
        _written([FileEntry("a/b", d, 1), FileEntry("a/b/c", d, 1)])
