"""An artifact's metadata: copied on the way in, compared deeply on save, converted from numpy
and tuples, NaN/±Inf kept as run.log keeps them, bad values refused where they are set."""

from __future__ import annotations

import copy
import math
import pickle
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from sdk_helpers import write

import cairn
from cairn.errors import InvalidMetadataError


def _log(tmp_path: Path, metadata: dict[str, object] | None = None) -> cairn.Artifact:
    art = cairn.Artifact("ds", type="dataset", metadata=metadata)
    art.add_file(write(tmp_path / "src" / "data.txt", "rows"))
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    return art


def test_a_nested_edit_is_saved(tmp_path: Path) -> None:
    art = _log(tmp_path, {"nested": {"a": 1, "b": [1, 2]}, "top": 1})
    art.metadata["nested"]["a"] = 2
    art.metadata["nested"]["b"].append(3)
    art.save()
    assert art.metadata == {"nested": {"a": 2, "b": [1, 2, 3]}, "top": 1}
    stored = cairn.Api("proj").artifact("ds:v0")
    assert stored.metadata == {"nested": {"a": 2, "b": [1, 2, 3]}, "top": 1}
    assert [h.field for h in stored.history()] == ["created", "metadata"]
    assert stored.history()[1].old == {"nested": {"a": 1, "b": [1, 2]}, "top": 1}
    # a version read twice shares nothing: editing one leaves the other as stored
    other = cairn.Api("proj").artifact("ds:v0")
    stored.metadata["nested"]["a"] = 99
    assert other.metadata["nested"]["a"] == 2
    other.save()  # nothing changed: nothing recorded
    assert len(other.history()) == 2


def test_the_callers_dict_is_copied_on_the_way_in(tmp_path: Path) -> None:
    md: dict[str, object] = {"nested": {"a": 1}, "list": [1]}
    art = cairn.Artifact("ds", type="dataset", metadata=md)
    md["nested"]["a"] = 2  # type: ignore[index]
    md["list"].append(2)  # type: ignore[attr-defined]
    md["new"] = True
    assert art.metadata == {"nested": {"a": 1}, "list": [1]}
    art.add_file(write(tmp_path / "data.txt", "x"))

    later: dict[str, object] = {"k": {"v": 1}}
    art.metadata = later
    later["k"]["v"] = 2  # type: ignore[index]
    inner = {"deep": 1}
    art.metadata["inner"] = inner
    inner["deep"] = 2
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    assert cairn.Api("proj").artifact("ds:v0").metadata == {"k": {"v": 1}, "inner": {"deep": 1}}

    # the same on a logged version
    edit: dict[str, object] = {"k": [1]}
    art.metadata = edit
    edit["k"].append(2)  # type: ignore[attr-defined]
    art.save()
    assert cairn.Api("proj").artifact("ds:v0").metadata == {"k": [1]}


def test_numpy_tuples_and_dates_are_converted(tmp_path: Path) -> None:
    art = _log(
        tmp_path,
        {
            "f32": np.float32(0.5),
            "i64": np.int64(7),
            "flag": np.bool_(True),
            "array": np.arange(6).reshape(2, 3),
            "shape": (2, 3),
            "nested": {"pair": (np.float64(1.5), "x"), "when": date(2026, 1, 2)},
            "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        },
    )
    expected = {
        "f32": 0.5,
        "i64": 7,
        "flag": True,
        "array": [[0, 1, 2], [3, 4, 5]],
        "shape": [2, 3],
        "nested": {"pair": [1.5, "x"], "when": "2026-01-02"},
        "at": "2026-01-02T03:04:05+00:00",
    }
    stored = cairn.Api("proj").artifact("ds:v0").metadata
    assert stored == expected
    assert type(stored["i64"]) is int and type(stored["f32"]) is float
    assert type(stored["flag"]) is bool
    # converted at once, on a logged version too
    art.metadata["score"] = np.float16(0.25)
    assert type(art.metadata["score"]) is float
    art.metadata.update(extra=np.array([1.0, 2.0]))
    art.save()
    assert cairn.Api("proj").artifact("ds:v0").metadata["extra"] == [1.0, 2.0]


def test_nan_and_infinity_are_kept_as_run_log_keeps_them(tmp_path: Path) -> None:
    art = _log(tmp_path, {"loss": float("nan"), "hi": np.float32("inf"), "lo": [-math.inf]})
    stored = cairn.Api("proj").artifact("ds:v0").metadata
    assert math.isnan(stored["loss"])
    assert stored["hi"] == math.inf and stored["lo"] == [-math.inf]
    # the same as a metric logged with run.log
    with cairn.init(project="proj") as run:
        run.log({"loss": float("nan")})
    assert math.isnan(run.metrics()[0]["loss"])
    # saving an unchanged NaN records nothing; changing it records once
    art.save()
    assert [h.field for h in art.history()] == ["created"]
    art.metadata["loss"] = 0.1
    art.save()
    art.save()
    assert [h.field for h in art.history()] == ["created", "metadata"]
    assert cairn.Api("proj").artifact("ds:v0").metadata["loss"] == 0.1
    # a new draft from the version keeps the floats
    draft = cairn.Api("proj").artifact("ds:v0").new_draft()
    assert draft.metadata["hi"] == math.inf


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), {1: "int key"}, {"deep": [{"x": {3}}]}],
    ids=["set", "object", "int-key", "deep-set"],
)
def test_a_bad_value_is_refused_where_it_is_set(tmp_path: Path, value: object) -> None:
    draft = cairn.Artifact("ds", type="dataset", metadata={"ok": 1})
    with pytest.raises(InvalidMetadataError, match=r"metadata\['bad'\]"):
        draft.metadata["bad"] = value
    with pytest.raises(InvalidMetadataError, match=r"metadata\['bad'\]"):
        draft.metadata = {"ok": 2, "bad": value}
    with pytest.raises(InvalidMetadataError, match=r"metadata\['bad'\]"):
        draft.metadata.update({"ok": 3, "bad": value})
    with pytest.raises(InvalidMetadataError, match=r"metadata\['bad'\]"):
        draft.metadata.setdefault("bad", value)
    assert draft.metadata == {"ok": 1}  # nothing half-applied

    logged = _log(tmp_path, {"nested": {"ok": 1}})
    with pytest.raises(InvalidMetadataError, match="metadata"):
        logged.metadata["nested"]["bad"] = value
    assert logged.metadata == {"nested": {"ok": 1}}


def test_a_metadata_dict_copies_and_pickles_as_a_plain_value() -> None:
    art = cairn.Artifact("ds", type="dataset", metadata={"a": {"b": [1, 2]}})
    clone = copy.deepcopy(art.metadata)
    clone["a"]["b"].append(3)
    assert art.metadata == {"a": {"b": [1, 2]}}
    assert pickle.loads(pickle.dumps(art.metadata)) == {"a": {"b": [1, 2]}}
    shallow = art.metadata.copy()
    shallow["a"]["b"].append(4)
    assert art.metadata == {"a": {"b": [1, 2]}}
    assert dict(art.metadata) == {"a": {"b": [1, 2]}}
