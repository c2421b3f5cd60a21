"""The same commands give the same answers on both backends: every read command's --json
parses and says the same thing embedded and through a server, and what is not found fails
the same way (exit code 3, the same one-line message).

Both backends hold a copy of the same seeded store (same ids, digests and times), so their
answers must be equal, not merely alike."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import Invoke

from cairn.cli.main import app

pytestmark = pytest.mark.embedded_only("compares the two backends itself, side by side")

EnvFor = dict[str, dict[str, str | None]]

EACH_RUN = "<each run of project demo>"
# Every command with --json that reads what a store holds, with arguments that find something.
READS: list[list[str]] = [
    ["projects"],
    ["artifact", "ls", "demo"],
    ["artifact", "ls", "demo", "--type", "model"],
    ["artifact", "versions", "demo/data"],
    ["artifact", "show", "demo/data:v1"],
    ["artifact", "show", "demo/data:stable"],
    ["artifact", "show", "demo/report"],
    ["artifact", "files", "demo/data:v1"],
    ["artifact", "files", "demo/data:v1", "sub"],
    ["artifact", "files", "demo/data:v1", "c.csv"],
    ["artifact", "diff", "demo/data:v0", "demo/data:v1"],
    ["artifact", "diff", "demo/model:v0", "demo/data:v1"],
    ["artifact", "history", "demo/data:v0"],
    ["lineage", "demo/model:v0"],
    ["lineage", "demo/report:v0", "--up"],
    ["lineage", "demo/data:v1", "--down", "--depth", "1"],
    ["runs", "ls", "demo"],
    ["runs", "ls", "demo", "--job-type", "training"],
    ["runs", "show", EACH_RUN],
]
# The answer differs by design: who you are and where calls go; the client's own cache.
DIFFERENT = [["whoami"], ["cache", "info"]]
# Commands with --json not compared here, and why.
ELSEWHERE = {
    "push": "writes; test_cli_push.py runs on both backends",
    "artifact put": "writes; test_cli_push.py runs on both backends",
    "gc": "local store only; test_cli_gc.py",
    "check": "local store only; tests/objects/test_check_repair.py",
    "registry list": "registries: test_cli_registry.py runs on both backends",
    "registry collections": "registries: test_cli_registry.py runs on both backends",
    "registry history": "registries: test_cli_registry.py runs on both backends",
    "registry members": "registries: test_cli_registry.py runs on both backends",
    "registry versions": "registries: test_cli_registry.py runs on both backends",
    "search": "registries and search: test_cli_registry.py runs on both backends",
    "pin": "writes cairn.lock; test_cli_pin.py runs on both backends",
    "server users": "the server's own database, on its host; tests/server",
    "server keys": "the server's own database, on its host; tests/server",
    "user ls": "accounts exist on a server only; test_cli_login.py",
    "key ls": "accounts exist on a server only; test_cli_login.py",
    "webhook add": "writes; test_cli_webhook.py runs on both backends",
    "webhook ls": "webhooks: test_cli_webhook.py runs on both backends",
    "webhook test": "writes; test_cli_webhook.py runs on both backends",
    "webhook log": "webhooks: test_cli_webhook.py runs on both backends",
    "retention set": "writes; test_cli_retention.py runs on both backends",
    "retention show": "retention: test_cli_retention.py runs on both backends",
    "retention apply": "deletes; test_cli_retention.py runs on both backends",
    "artifact ttl": "writes; test_cli_retention.py runs on both backends",
}

# What is not found, with --json where the command has it: exit 3 and one line on stderr.
NOT_FOUND: list[list[str]] = [
    ["artifact", "ls", "nosuch", "--json"],
    ["artifact", "versions", "demo/nothing", "--json"],
    ["artifact", "versions", "nosuch/data", "--json"],
    ["artifact", "show", "demo/nothing", "--json"],
    ["artifact", "show", "demo/data:v7", "--json"],
    ["artifact", "show", "demo/data:nolabel", "--json"],
    ["artifact", "show", "nosuch/data", "--json"],
    ["artifact", "files", "demo/data:v1", "nope", "--json"],
    ["artifact", "files", "demo/nothing", "--json"],
    ["artifact", "diff", "demo/data:v0", "demo/data:v9", "--json"],
    ["artifact", "diff", "demo/nothing", "demo/data:v0", "--json"],
    ["artifact", "history", "demo/data:v9", "--json"],
    ["artifact", "get", "demo/nothing"],
    ["artifact", "get", "demo/data:v1", "--path", "nope"],
    ["artifact", "verify", "demo/data:v9", "."],
    ["artifact", "rm", "demo/data:v9"],
    ["artifact", "alias", "add", "demo/nothing:v0", "best"],
    ["artifact", "alias", "rm", "demo/data:v1", "nope"],
    ["artifact", "tag", "add", "demo/data:v9", "gold"],
    ["artifact", "tag", "rm", "demo/data:v0", "nope"],
    ["lineage", "demo/nothing", "--json"],
    ["lineage", "demo/data:v9", "--json"],
    ["runs", "ls", "nosuch", "--json"],
    ["runs", "show", "nosuchrun", "--json"],
]


@functools.cache
def _tree() -> Any:
    """The `cairn` command as Click sees it (its subcommands under ``.commands``)."""
    return typer.main.get_command(app)


def _json_commands() -> set[str]:
    """The path of every command that takes --json, e.g. "artifact show"."""

    def walk(command: Any, path: list[str]) -> set[str]:
        subs = getattr(command, "commands", None)
        if subs:
            return set().union(*(walk(sub, [*path, name]) for name, sub in subs.items()))
        options = {opt for param in command.params for opt in getattr(param, "opts", ())}
        return {" ".join(path)} if "--json" in options else set()

    return walk(_tree(), [])


def _command(args: list[str]) -> str:
    """The command an argument list runs: ["artifact", "show", "x"] -> "artifact show"."""
    command: Any = _tree()
    path = []
    for arg in args:
        subs = getattr(command, "commands", None)
        if not subs or arg not in subs:
            break
        command = subs[arg]
        path.append(arg)
    return " ".join(path)


@pytest.fixture
def env_for(seeded_template: Path, tmp_path: Path, serve: Callable[[Path], Any]) -> EnvFor:
    """The environment of each backend, each on its own copy of the seeded store."""
    embedded = tmp_path / "embedded"
    shutil.copytree(seeded_template, embedded)
    data = tmp_path / "server-data"
    shutil.copytree(seeded_template, data)
    served = serve(data)
    return {
        "embedded": {"CAIRN_DIR": str(embedded), "CAIRN_URL": None, "CAIRN_API_KEY": None},
        "server": served.env(tmp_path / "client"),
    }


def test_every_command_with_json_is_checked() -> None:
    checked = {_command(args) for args in READS + DIFFERENT}
    assert not checked & set(ELSEWHERE)
    assert _json_commands() == checked | set(ELSEWHERE), (
        "a command with --json is neither compared on both backends here nor in ELSEWHERE"
    )


def test_read_commands_answer_the_same_on_both_backends(cli: Invoke, env_for: EnvFor) -> None:
    whoami = {b: json.loads(cli("whoami", "--json", env=env).stdout) for b, env in env_for.items()}
    assert whoami["embedded"]["mode"] == "embedded"  # each backend is the one it claims
    assert (whoami["server"]["mode"], whoami["server"]["url"]) == (
        "server",
        env_for["server"]["CAIRN_URL"],
    )
    cache = [json.loads(cli("cache", "info", "--json", env=env).stdout) for env in env_for.values()]
    assert cache[0].keys() == cache[1].keys()

    runs = json.loads(cli("runs", "ls", "demo", "--json", env=env_for["embedded"]).stdout)
    assert len(runs) == 4
    for template in READS:
        for run in runs if EACH_RUN in template else runs[:1]:
            args = [run["id"] if arg == EACH_RUN else arg for arg in template]
            answers = {
                backend: json.loads(cli(*args, "--json", env=env).stdout)
                for backend, env in env_for.items()
            }
            assert answers["embedded"], args
            assert answers["server"] == answers["embedded"], f"cairn {' '.join(args)} --json"


def test_not_found_fails_the_same_on_both_backends(cli: Invoke, env_for: EnvFor) -> None:
    for args in NOT_FOUND:
        results = {backend: cli(*args, code=None, env=env) for backend, env in env_for.items()}
        for backend, result in results.items():
            where = f"cairn {' '.join(args)} on the {backend} backend"
            assert result.exit_code == 3, f"{where} exited {result.exit_code}: {result.stderr}"
            assert result.stdout == "", where
            assert result.stderr.startswith("error: "), where
            assert result.stderr.count("\n") == 1, where
        assert results["server"].stderr == results["embedded"].stderr, f"cairn {' '.join(args)}"
