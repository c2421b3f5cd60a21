"""The dashboard's filter box (the CLI's --where language in one text box), "as of" times and
alias timelines (cairn.dashboard.filters), on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.errors import InvalidInputError


def test_filter_box_clauses_split_at_top_level_and() -> None:
    from cairn.dashboard.filters import split_where, where_filters

    assert split_where('metadata.acc > 0.9 AND tags in ["a and b"]') == [
        "metadata.acc > 0.9",
        'tags in ["a and b"]',
    ]
    assert split_where('description ~ "cats and dogs"\nname = clf') == [
        'description ~ "cats and dogs"',
        "name = clf",
    ]
    assert split_where("  ") == [] and where_filters("") is None
    assert where_filters('metadata.acc > 0.9 and tags in ["eval"]') == {
        "$and": [{"metadata.acc": {"$gt": 0.9}}, {"tags": {"$in": ["eval"]}}]
    }
    with pytest.raises(InvalidInputError, match="cannot read 'acc'"):
        where_filters("acc")


def test_as_of_times_are_utc_unless_zoned() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from cairn.dashboard.filters import at_value, parse_at

    assert parse_at("2026-11-30T12:00") == datetime(2026, 11, 30, 12, tzinfo=UTC)
    zoned = parse_at("2026-11-30T12:00+01:00")
    assert zoned == datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert at_value(datetime(2026, 11, 30, 13, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-11-30T12:00:00"
    )
    assert parse_at("") is None
    with pytest.raises(InvalidInputError, match="date and time"):
        parse_at("last monday")


def test_alias_timeline_spans() -> None:
    from datetime import UTC, datetime

    from cairn.dashboard.filters import AliasChange, timeline

    t = [datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 6)]
    spans = timeline(
        [
            AliasChange("production", 0, t[0], "ann"),
            AliasChange("staging", 1, t[1]),
            AliasChange("production", 1, t[2], "bob"),
            AliasChange("production", 1, t[2]),  # set again where it is: no new span
            AliasChange("staging", None, t[3]),  # removed
            AliasChange("production", 2, t[4]),
        ]
    )
    assert list(spans) == ["production", "staging"]
    assert [(s.version, s.start, s.end) for s in spans["production"]] == [
        (2, t[4], None),
        (1, t[2], t[4]),
        (0, t[0], t[2]),
    ]
    assert spans["production"][1].user == "bob"
    assert [(s.version, s.end) for s in spans["staging"]] == [(1, t[3])]
    assert spans["production"][1].covers(t[3]) and not spans["production"][1].covers(t[4])


def test_alias_history_of_an_artifact_replays_moves_and_deletions(tmp_path: Path) -> None:
    """`SqlRegistry.alias_history`: the moves the artifact page's timeline is drawn from."""
    import cairn
    from cairn.dashboard.filters import AliasChange, timeline
    from cairn.sdk.backend import get_backend

    ids = []
    with cairn.init(project="p") as run:
        for i in range(3):
            (tmp_path / "w").write_text(str(i))
            art = run.log_artifact(tmp_path / "w", name="m", type="model", aliases=["best"])
            ids.append(art.id)
    registry = get_backend().registry
    registry.add_alias(ids[0], "old")
    registry.delete_version(ids[0], force=True)
    moves = registry.alias_history("p", "m")  # type: ignore[attr-defined]
    assert [(m.alias, m.version) for m in moves] == [
        ("best", 0),
        ("best", None),  # moved: v0 loses it ...
        ("best", 1),  # ... and v1 gets it
        ("best", None),
        ("best", 2),
        ("old", 0),
        ("old", None),  # v0 deleted with it
    ]
    spans = timeline(AliasChange(m.alias, m.version, m.at) for m in moves)
    assert [s.version for s in spans["best"]] == [2, 1, 0] and spans["best"][0].end is None
    assert spans["old"][0].end is not None
