"""`cairn push` and `cairn artifact put`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn


def test_push_folder_prints_version_and_how_to_use_it(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    data = folder("data", {"a.csv": "1,2\n", "sub/b.csv": "3,4\n"})
    out = cli("push", str(data), "--project", "p1").stdout
    assert "Pushed p1/data:v0 (2 files, 8 B; aliases: latest)" in out
    assert 'run.use_artifact("p1/data:v0")' in out
    assert "cairn artifact get p1/data:v0" in out
    art = cairn.Api("p1").artifact("data:latest")
    assert art.version == "v0"
    assert art.type == "dataset"
    assert sorted(f.path for f in art.files()) == ["a.csv", "sub/b.csv"]
    runs = cairn.Api("p1").runs()
    assert [r.job_type for r in runs] == ["push"]
    assert [a.qualified_name for a in runs[0].logged_artifacts()] == ["p1/data:v0"]


def test_nothing_changed_makes_no_new_version(cli: Invoke, folder: Callable[..., Path]) -> None:
    data = folder("data", {"a.csv": "1\n"})
    cli("push", str(data))
    out = cli("push", str(data), "--alias", "best").stdout
    assert "Nothing changed" in out
    assert "default/data:v0" in out
    assert "no new version" in out
    versions = cairn.Api().artifact_versions("data")
    assert [v.version for v in versions] == ["v0"]
    assert "best" in versions[0].aliases  # aliases asked for go to the existing version
    noted = cli("push", str(data), "-m", "k=1")
    assert "Nothing changed" in noted.stdout
    assert "--metadata and --description" in noted.stderr
    assert cairn.Api().artifact("data").metadata == {}
    (data / "a.csv").write_text("2\n")
    assert "Pushed default/data:v1" in cli("push", str(data)).stdout


def test_push_options_name_type_alias_description_metadata_tag(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    data = folder("w", {"model.bin": "weights"})
    cli(
        "push",
        str(data / "model.bin"),
        "--name",
        "clf",
        "--type",
        "model",
        "--alias",
        "best",
        "--alias",
        "prod",
        "--description",
        "a model",
        "--metadata",
        "acc=0.9",
        "--metadata",
        "epochs=3",
        "--metadata",
        "note=hello world",
        "--metadata",
        'cfg={"lr": 0.1}',
        "--metadata",
        "flag=true",
        "--tag",
        "t1",
    )
    art = cairn.Api().artifact("clf:best")
    assert art.type == "model"
    assert set(art.aliases) == {"latest", "best", "prod"}
    assert art.tags == ["t1"]
    assert art.description == "a model"
    assert art.metadata == {
        "acc": 0.9,
        "epochs": 3,
        "note": "hello world",
        "cfg": {"lr": 0.1},
        "flag": True,
    }
    assert [f.path for f in art.files()] == ["model.bin"]


def test_name_defaults_to_base_name_and_type_to_existing_type(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    data = folder("weights.pt", {"x": "1"})
    cli("push", str(data), "--type", "model")
    (data / "x").write_text("2")
    cli("push", str(data))  # no --type: keeps the artifact's type
    versions = cairn.Api().artifact_versions("weights.pt")
    assert [(v.version, v.type) for v in versions] == [("v1", "model"), ("v0", "model")]


def test_several_paths_go_in_under_their_base_names(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    a = folder("a", {"1.txt": "1"})
    b = folder("b", {"2.txt": "2"})
    single = folder("c", {"solo.txt": "s"}) / "solo.txt"
    cli("push", str(a), str(b), str(single), "--name", "bundle")
    art = cairn.Api().artifact("bundle")
    assert sorted(f.path for f in art.files()) == ["a/1.txt", "b/2.txt", "solo.txt"]


def test_artifact_put_is_push_and_json(
    cli: Invoke, cli_json: Callable[..., Any], folder: Callable[..., Path]
) -> None:
    data = folder("data", {"a": "1"})
    first = cli_json("artifact", "put", str(data), "-p", "proj")
    assert first["created"] is True
    assert first["version"]["qualified_name"] == "proj/data:v0"
    sdk = cairn.Api("proj").artifact("data:v0")
    assert first["version"]["digest"] == sdk.digest
    assert first["version"]["size"] == sdk.size
    assert first["run_id"] == sdk.logged_by().id
    assert first["stats"]["files"] == 1
    again = cli_json("artifact", "put", str(data), "-p", "proj")
    assert again["created"] is False
    assert again["version"]["id"] == first["version"]["id"]


def test_quiet_prints_only_the_version(cli: Invoke, folder: Callable[..., Path]) -> None:
    data = folder("data", {"a": "1"})
    assert cli("push", str(data), "-q").stdout == "default/data:v0\n"
    assert cli("--quiet", "push", str(data)).stdout == "default/data:v0\n"


def test_project_from_environment(cli: Invoke, folder: Callable[..., Path]) -> None:
    data = folder("data", {"a": "1"})
    cli("push", str(data), env={"CAIRN_PROJECT": "envproj"})
    assert cairn.Api("envproj").artifact("data").qualified_name == "envproj/data:v0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metadata", "novalue"], "is not KEY=VALUE"),
        (["--metadata", "=1"], "is not KEY=VALUE"),
        (["--alias", "v2"], "alias 'v2' is set by Cairn itself"),
        (["--name", "bad name"], "invalid artifact name 'bad name'"),
    ],
)
def test_bad_input_is_a_usage_error(
    cli: Invoke, folder: Callable[..., Path], args: list[str], message: str
) -> None:
    data = folder("data", {"a": "1"})
    result = cli("push", str(data), *args, code=2)
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""


def test_missing_path_and_bad_default_name(cli: Invoke, folder: Callable[..., Path]) -> None:
    result = cli("push", "does-not-exist", code=2)
    assert "does not exist" in result.stderr
    data = folder("my data", {"a": "1"})
    result = cli("push", str(data), code=2)
    assert "choose a name with --name" in result.stderr


def test_type_clash_is_refused(cli: Invoke, folder: Callable[..., Path]) -> None:
    data = folder("data", {"a": "1"})
    cli("push", str(data))
    (data / "a").write_text("2")
    result = cli("push", str(data), "--type", "model", code=2)
    assert "already exists with type 'dataset'" in result.stderr


@pytest.mark.parametrize("file_name", ["model.h5", "weights.safetensors", "clf.PKL"])
def test_pushing_one_model_file_makes_a_model_named_by_its_stem(
    cli: Invoke, folder: Callable[..., Path], file_name: str
) -> None:
    src = folder("m", {file_name: "weights"})
    result = cli("push", str(src / file_name))
    stem = file_name.rsplit(".", 1)[0]
    assert f"Pushed default/{stem}:v0" in result.stdout
    assert "looks like a model file" in result.stderr
    assert f"name '{stem}'" in result.stderr and "type 'model'" in result.stderr
    art = cairn.Api().artifact(f"{stem}:latest")
    assert art.type == "model"
    assert [f.path for f in art.files()] == [file_name]
    # `--type model` is no longer refused on the second push, and is not needed either
    again = cli("push", str(src / file_name), "--type", "model")
    assert "Nothing changed" in again.stdout


def test_an_existing_artifact_keeps_its_type_and_explicit_choices_win(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    src = folder("m", {"net.pt": "w1"})
    cli("push", str(src / "net.pt"), "--name", "net", "--type", "dataset")
    (src / "net.pt").write_text("w2")
    result = cli("push", str(src / "net.pt"))
    assert "Pushed default/net:v1" in result.stdout
    assert "name 'net'" in result.stderr  # the name is the file's stem, said so...
    assert "type 'model'" not in result.stderr  # ...and the artifact keeps its type
    assert cairn.Api().artifact("net:latest").type == "dataset"
    data = folder("d", {"a.csv": "1\n"})
    assert "looks like a model file" not in cli("push", str(data)).stderr
    assert cairn.Api().artifact("d").type == "dataset"


def test_project_given_before_the_command(cli: Invoke, folder: Callable[..., Path]) -> None:
    data = folder("data", {"a.csv": "1\n"})
    assert "Pushed p9/data:v0" in cli("--project", "p9", "push", str(data)).stdout
    assert "data" in cli("-p", "p9", "artifact", "ls").stdout
    # the command's own --project wins over the one before it
    assert "Pushed p8/data:v0" in cli("-p", "p9", "push", str(data), "-p", "p8").stdout
