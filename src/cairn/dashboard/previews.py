"""Previews of data files read from byte ranges: Parquet, Arrow IPC / Feather, NumPy ``.npy`` /
``.npz``, safetensors.

A file is read through `EntryReader`, a seekable file over its stored objects: a read fetches
only the objects (a blob, or the content-defined chunks of a large file) that overlap it, each
verified against its digest. So a 10 GiB Parquet file is previewed from its footer (schema, row
count, and per-column nulls and min/max from the row-group statistics) and its first row group;
a safetensors checkpoint from its JSON header alone. Nothing is ever unpickled: ``.npy`` and
``.npz`` headers are parsed as literals, and object arrays are not read.
"""

from __future__ import annotations

import ast
import bisect
import io
import json
import math
import posixpath
import struct
import zipfile
from collections import OrderedDict
from typing import Any

from cairn.objects import chunking, tree
from cairn.objects.store import ObjectStore

ROWS = 20  # first rows shown
MAX_ROW_GROUP = 64 << 20  # the first rows are read only from a first row group this small
WHOLE_ARROW = 64 << 20  # an Arrow file this small is read whole for exact counts
MAX_HEADER = 100 << 20  # a safetensors header larger than this is refused
MAX_COLUMNS = 200
CELL = 80  # characters of a cell shown

KINDS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".npy": "npy",
    ".npz": "npz",
    ".safetensors": "safetensors",
}
AUDIO = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
    ".weba": "audio/webm",
}


def kind_of(path: str) -> str:
    """'parquet', 'arrow', 'npy', 'npz', 'safetensors', 'audio' or ''."""
    ext = posixpath.splitext(path.lower())[1]
    if ext in AUDIO:
        return "audio"
    return KINDS.get(ext, "")


class PreviewError(Exception):
    """The file is not what its name says (shown as a note, never a server error)."""


class EntryReader(io.RawIOBase):
    """A read-only, seekable file over one stored file's objects."""

    def __init__(self, object_store: ObjectStore, entry: tree.File) -> None:
        super().__init__()
        self.object_store = object_store
        self.size = entry.size
        if entry.chunks:
            parts = chunking.decode_chunk_list(object_store.get(entry.chunks))
        else:
            parts = [(entry.digest, self.size)] if self.size else []
        self.digests = [d for d, _ in parts]
        self.starts: list[int] = []
        offset = 0
        for _, n in parts:
            self.starts.append(offset)
            offset += n
        self.pos = 0
        self.fetched = 0  # bytes of objects read from the store
        self._recent: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.pos = offset
        elif whence == io.SEEK_CUR:
            self.pos += offset
        else:
            self.pos = self.size + offset
        self.pos = max(self.pos, 0)
        return self.pos

    def _object(self, i: int) -> bytes:
        data = self._recent.get(i)
        if data is None:
            data = self.object_store.get(self.digests[i])  # verified against its digest
            self.fetched += len(data)
            self._recent[i] = data
            if len(self._recent) > 4:
                self._recent.popitem(last=False)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.pos + len(view), self.size)
        written = 0
        while self.pos < end:
            i = bisect.bisect_right(self.starts, self.pos) - 1
            data = self._object(i)
            lo = self.pos - self.starts[i]
            n = min(len(data) - lo, end - self.pos)
            view[written : written + n] = data[lo : lo + n]
            written += n
            self.pos += n
        return written

    def read_at(self, offset: int, n: int) -> bytes:
        self.seek(offset)
        return self.read(n) or b""


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = value[:CELL].hex() if isinstance(value, bytes) else str(value)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def _count(n: int) -> str:
    return f"{n:,}"


# --- Parquet ---------------------------------------------------------------------------------


def parquet(reader: EntryReader) -> dict[str, Any]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(reader)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ...
        raise PreviewError(f"not a readable Parquet file ({exc})") from None
    meta = pf.metadata
    schema = pf.schema_arrow
    columns = []
    for i, field in enumerate(schema):
        if i >= MAX_COLUMNS:
            break
        nulls: int | None = 0  # None: a row group does not say
        lo: Any = None
        hi: Any = None
        ranged = True  # every row group gave a min and max
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(i).statistics
            if stats is None:
                nulls, ranged = None, False
                continue
            if not stats.has_null_count:
                nulls = None
            elif nulls is not None:
                nulls += stats.null_count
            if not stats.has_min_max:
                ranged = False
                continue
            try:
                lo = stats.min if lo is None else min(lo, stats.min)
                hi = stats.max if hi is None else max(hi, stats.max)
            except TypeError:
                ranged = False
        if not ranged:
            lo = hi = None
        columns.append(
            [
                field.name,
                str(field.type),
                "—" if nulls is None else _count(nulls),
                "—" if lo is None else _cell(lo),
                "—" if hi is None else _cell(hi),
            ]
        )
    header: list[str] = []
    rows: list[list[str]] = []
    note = "Nulls, min and max from the file's row-group statistics (no data read)."
    if meta.num_row_groups and meta.row_group(0).total_byte_size <= MAX_ROW_GROUP:
        try:
            batch = next(pf.iter_batches(batch_size=ROWS, row_groups=[0]), None)
        except Exception as exc:
            raise PreviewError(f"cannot read the first rows ({exc})") from None
        if batch is not None:
            header = batch.schema.names
            table = batch.to_pylist()[:ROWS]
            rows = [[_cell(r.get(h)) for h in header] for r in table]
    elif meta.num_row_groups:
        note += " The first row group is too large to read for a preview."
    facts = [
        ("rows", _count(meta.num_rows)),
        ("columns", _count(meta.num_columns)),
        ("row groups", _count(meta.num_row_groups)),
        ("created by", str(meta.created_by or "—")),
    ]
    return {"facts": facts, "columns": columns, "header": header, "rows": rows, "note": note}


# --- Arrow IPC / Feather ---------------------------------------------------------------------


def arrow(reader: EntryReader) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc

    try:
        f = ipc.open_file(reader)
    except Exception:
        try:  # the streaming format (no footer)
            reader.seek(0)
            stream = ipc.open_stream(reader)
            first = stream.read_next_batch()
        except Exception as exc:
            raise PreviewError(f"not a readable Arrow IPC / Feather file ({exc})") from None
        batches = [first]
        schema = stream.schema
        whole = False
    else:
        schema = f.schema
        whole = reader.size <= WHOLE_ARROW
        n = f.num_record_batches
        batches = [f.get_batch(i) for i in range(n if whole else min(n, 1))]
    table = pa.Table.from_batches(batches, schema=schema)
    columns = []
    for i, field in enumerate(schema):
        if i >= MAX_COLUMNS:
            break
        col = table.column(i)
        lo = hi = "—"
        try:
            mm = pc.min_max(col)
            if mm["min"].is_valid:
                lo, hi = _cell(mm["min"].as_py()), _cell(mm["max"].as_py())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        columns.append([field.name, str(field.type), _count(col.null_count), lo, hi])
    header = schema.names
    rows = [[_cell(r.get(h)) for h in header] for r in table.slice(0, ROWS).to_pylist()]
    if whole:
        facts = [("rows", _count(table.num_rows))]
        note = "Nulls, min and max over the whole file."
    else:
        facts = [("rows in the first batch", _count(table.num_rows))]
        note = "A large file: nulls, min and max over its first record batch only."
    facts.append(("columns", _count(len(schema))))
    return {"facts": facts, "columns": columns, "header": header, "rows": rows, "note": note}


# --- NumPy -----------------------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(read: Any) -> dict[str, Any]:
    """The header of a .npy stream (a Python dict literal, parsed without evaluating code)."""
    head = read(10)
    if len(head) < 10 or not head.startswith(_NPY_MAGIC):
        raise PreviewError("not a NumPy .npy file (bad magic)")
    major = head[6]
    if major == 1:
        (length,) = struct.unpack("<H", head[8:10])
        extra = b""
    elif major in (2, 3):
        extra = read(2)
        (length,) = struct.unpack("<I", head[8:10] + extra)
    else:
        raise PreviewError(f"unknown .npy format version {major}")
    if length > 1 << 20:
        raise PreviewError("the .npy header is implausibly large")
    text = read(length).decode("utf-8" if major == 3 else "latin1")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise PreviewError("the .npy header is not a literal") from None
    if not isinstance(header, dict) or "shape" not in header or "descr" not in header:
        raise PreviewError("the .npy header lacks its shape or dtype")
    return header


def _array_row(name: str, header: dict[str, Any]) -> list[str]:
    shape = tuple(header["shape"])
    count = math.prod(shape)
    return [
        name,
        str(header["descr"]),
        "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")",
        _count(count),
        "Fortran" if header.get("fortran_order") else "C",
    ]


ARRAY_HEADER = ["array", "dtype", "shape", "elements", "order"]


def npy(reader: EntryReader) -> dict[str, Any]:
    header = _npy_header(reader.read)
    return {
        "facts": [],
        "columns": [_array_row("(the array)", header)],
        "column_header": ARRAY_HEADER,
        "header": [],
        "rows": [],
        "note": "From the file's header only.",
    }


def npz(reader: EntryReader) -> dict[str, Any]:
    try:
        archive = zipfile.ZipFile(reader)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PreviewError(f"not a NumPy .npz file ({exc})") from None
    arrays = []
    members = archive.infolist()
    for info in members[:MAX_COLUMNS]:
        name = info.filename.removesuffix(".npy")
        try:
            with archive.open(info) as member:
                arrays.append(_array_row(name, _npy_header(member.read)))
        except PreviewError as exc:
            arrays.append([name, "—", "—", "—", str(exc)])
    return {
        "facts": [("arrays", _count(len(members)))],
        "columns": arrays,
        "column_header": ARRAY_HEADER,
        "header": [],
        "rows": [],
        "note": "From each member's header only.",
    }


# --- safetensors -----------------------------------------------------------------------------


def safetensors(reader: EntryReader) -> dict[str, Any]:
    """Tensor names, dtypes, shapes and the parameter count, from the JSON header alone."""
    head = reader.read_at(0, 8)
    if len(head) < 8:
        raise PreviewError("not a safetensors file (shorter than its header size)")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER or 8 + length > reader.size:
        raise PreviewError("not a safetensors file (header size out of range)")
    try:
        header = json.loads(reader.read_at(8, length))
    except (ValueError, UnicodeDecodeError):
        raise PreviewError("not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise PreviewError("not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    tensors = []
    total = 0
    for name, spec in sorted(header.items()):
        if not isinstance(spec, dict) or "shape" not in spec:
            raise PreviewError(f"not a safetensors file (tensor {name!r} has no shape)")
        shape = [int(s) for s in spec["shape"]]
        count = math.prod(shape)
        total += count
        tensors.append([name, str(spec.get("dtype", "?")), str(tuple(shape)), _count(count)])
    facts = [("tensors", _count(len(tensors))), ("parameters", _count(total))]
    facts += [(f"metadata: {k}", _cell(v)) for k, v in list(metadata.items())[:10]]
    return {
        "facts": facts,
        "columns": tensors[: MAX_COLUMNS * 5],
        "column_header": ["tensor", "dtype", "shape", "parameters"],
        "header": [],
        "rows": [],
        "note": f"From the {length:,}-byte header only; the weights were not read.",
    }


READERS = {"parquet": parquet, "arrow": arrow, "npy": npy, "npz": npz, "safetensors": safetensors}
TABLE_HEADER = ["column", "type", "nulls", "min", "max"]


def rich_preview(object_store: ObjectStore, kind: str, entry: tree.File) -> dict[str, Any]:
    """The preview data of a file of one of READERS' kinds; ``error`` says why there is none."""
    reader = EntryReader(object_store, entry)
    try:
        found = READERS[kind](reader)
    except PreviewError as exc:
        return {"error": str(exc), "fetched": reader.fetched}
    except ImportError:
        return {"error": "previews of this format need pyarrow on the server (cairn[previews])"}
    found.setdefault("column_header", TABLE_HEADER)
    found["fetched"] = reader.fetched
    return found
