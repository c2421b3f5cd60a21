"""`cairn push` (also `cairn artifact put`): log files or a folder as a new version."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, ProjectOpt, QuietOpt, fail


def parse_metadata(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is used as such, else as a string."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. --metadata rows=1000 --metadata source=s3)",
                param_hint="'--metadata'",
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        result[key] = value
    return result


# Files that are a model on their own: `cairn push model.h5` logs a model named `model`.
MODEL_SUFFIXES = (
    ".h5",
    ".keras",
    ".pt",
    ".pth",
    ".ckpt",
    ".safetensors",
    ".onnx",
    ".pkl",
    ".joblib",
    ".gguf",
)


def model_file(paths: list[Path]) -> Path | None:
    """The one path pushed, when it is a file with a well-known model extension."""
    if len(paths) == 1 and paths[0].is_file() and paths[0].suffix.lower() in MODEL_SUFFIXES:
        return paths[0]
    return None


# A first log of a folder at least this big into a store of this machine's (or a bucket) goes
# to worker processes, one per core, unless --workers says otherwise: one process logs small
# files on about one core. A re-log stays in one process, where folders unchanged since the
# last log are taken whole; so does a log through a server, whose own work bounds it (on one
# machine, two workers through a server were 10-20% slower than one process).
AUTO_WORKERS_FILES = 100_000


def _auto_workers(files: int, project: str, name: str) -> bool:
    """Whether a folder of ``files`` files is logged by worker processes by default."""
    from cairn import config
    from cairn.distributed.engines import available_cores

    if files < AUTO_WORKERS_FILES or available_cores() < 2 or config.server_url():
        return False
    return _existing_type(project, name) is None


def _existing_type(project: str, name: str) -> str | None:
    """The type of the artifact NAME in PROJECT, or None when it does not exist yet."""
    from cairn.cli.common import backend
    from cairn.errors import NotFoundError

    try:
        found = backend().registry.list_artifacts(project, search=name, limit=1000)
    except NotFoundError:
        return None
    for info in found:
        if info.name == name:
            return info.type
    return None


def _log_on_cluster(
    run: Any,
    art: Any,
    folder: Path,
    dask: str | None,
    ray: str | None,
    workers: int | None,
    shards: int | None,
    aliases: list[str],
    tags: list[str],
    metadata: dict[str, Any],
) -> Any:
    """The draft's folder logged by the workers of a Dask or Ray cluster, or by worker
    processes on this machine (`cairn.distributed.log_dir`), as the version the draft
    describes."""
    import cairn.distributed
    from cairn.errors import InvalidInputError, MissingDependencyError

    options: dict[str, Any] = {
        "run": run,
        "shards": shards,
        "description": art.description,
        "metadata": metadata or None,
        "aliases": aliases,
        "tags": tags,
    }
    if workers is not None:
        engine = cairn.distributed.processes_engine(workers or None)  # 0: one per core
        return cairn.distributed.log_dir(folder, art.name, art.type, engine=engine, **options)
    if dask is not None:
        try:
            import distributed
        except ImportError:
            raise MissingDependencyError(
                "--dask needs Dask's distributed scheduler: pip install 'cairn[dask]'"
            ) from None
        connect: Any = distributed.Client
        with connect(dask, timeout=30) as client:
            return cairn.distributed.log_dir(folder, art.name, art.type, client=client, **options)
    try:
        import ray as ray_module
    except ImportError:
        raise MissingDependencyError("--ray needs Ray: pip install 'cairn[ray]'") from None
    if ray_module.is_initialized():  # only when called inside a Python process
        raise InvalidInputError(
            f"Ray is already initialised in this process: --ray {ray} cannot choose the cluster"
        )
    # Ray reads 'auto' (the cluster this machine belongs to) and 'local' (a new one) itself
    ray_module.init(address=ray, log_to_driver=False, include_dashboard=False)
    try:
        return cairn.distributed.log_dir(folder, art.name, art.type, engine="ray", **options)
    finally:
        ray_module.shutdown()


def push(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="Files or folders to log. One folder: its contents are the artifact. Several "
            "paths: each goes in under its own base name.",
            exists=True,
            show_default=False,
        ),
    ],
    project: ProjectOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Artifact name. Default: the first path's base name (without the extension "
            "for a model file such as model.pt).",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--type",
            "-t",
            help="Artifact type, e.g. dataset or model. Default: the existing artifact's type, "
            "else 'model' for one model file (.pt, .pth, .ckpt, .safetensors, .onnx, .h5, "
            ".keras, .pkl, .joblib, .gguf), else 'dataset'.",
            show_default=False,
        ),
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", "-a", help="Alias for the version (repeatable), e.g. best."),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", "-d", help="Description of the version.", show_default=False),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata",
            "-m",
            metavar="KEY=VALUE",
            help="Metadata entry (repeatable). VALUE is parsed as JSON when it can be "
            "(10, 0.5, true, [1,2], {...}), else kept as a string.",
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Log one folder with the workers of the Dask cluster whose scheduler is at "
            "ADDRESS (e.g. tcp://10.0.0.5:8786): each hashes and stores a shard of the files. "
            "The same version as without. Needs pip install 'cairn[dask]'.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="As --dask, on the Ray cluster at ADDRESS ('auto': the one this machine "
            "belongs to; 'local': start one here). Needs pip install 'cairn[ray]'.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            min=0,
            help="Log one folder with N worker processes on this machine (0: one per core; "
            "1: this process alone), each hashing and storing a shard of the files. The same "
            "version as without. Default: one per core for the first log of a folder of "
            "100,000 files or more into a store of this machine or a bucket (not through a "
            "server), else this process alone.",
            show_default=False,
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            min=1,
            help="With --dask, --ray or --workers: how many tasks. Default: four per worker, "
            "at most 50,000 files each.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Log files or a folder as a new version of an artifact.

    The files are logged by a run of job type 'push'. When they are identical to an existing
    version, no new version is made (aliases and tags asked for are applied to that version).
    With --dask or --ray, the workers of that cluster read and store the folder's files;
    with --workers, worker processes on this machine do.
    """
    from cairn.cli.common import version_info, version_json
    from cairn.core import names
    from cairn.errors import InvalidNameError
    from cairn.sdk.artifact import Artifact, draft_files
    from cairn.sdk.run import init

    output.silence(quiet)
    flags = {"--dask": dask, "--ray": ray, "--workers": None if workers == 1 else workers}
    chosen = [flag for flag, value in flags.items() if value is not None]
    if len(chosen) > 1:
        fail(f"give one of {', '.join(chosen)}, not several", EXIT_USAGE)
    cluster = bool(chosen)
    if cluster and not (len(paths) == 1 and paths[0].is_dir()):
        fail(f"{chosen[0]} logs one folder: give a single folder", EXIT_USAGE)
    if shards is not None and not cluster:
        fail("--shards goes with --dask, --ray or --workers", EXIT_USAGE)
    meta = parse_metadata(metadata or [])
    proj = output.resolve_project(project)
    model = model_file(paths)
    chose: list[str] = []
    if name is None:
        name = os.path.basename(os.path.abspath(paths[0]))
        if model is not None:
            name = model.stem
            chose.append(f"name '{name}'")
        try:
            names.check_artifact_name(name)
        except InvalidNameError as exc:
            fail(f"{exc}; choose a name with --name", EXIT_USAGE)
    else:
        names.check_artifact_name(name)
    if kind:
        art_type = names.check_type(kind)
    else:
        existing = _existing_type(proj, name)
        if existing is not None:
            art_type = existing
        elif model is not None:
            art_type = "model"
            chose.append("type 'model'")
        else:
            art_type = "dataset"
    if chose and not json_out:
        output.hint(
            f"note: {model} looks like a model file: using {' and '.join(chose)} "
            "(set --name/--type to choose)"
        )
    art = Artifact(name, art_type, description=description or "", metadata=meta)
    if len(paths) == 1 and paths[0].is_dir():
        if not cluster:  # on a cluster, its driver walks the folder (cairn.distributed.log_dir)
            art.add_dir(paths[0])
            files = draft_files(art)
            if workers is None and _auto_workers(files, proj, name):
                workers, cluster = 0, True
                if not json_out:
                    output.hint(
                        f"note: a first log of {files:,} files: using worker processes, one "
                        "per core (--workers 1: this process alone)"
                    )
    else:
        for path in paths:
            if path.is_dir():
                art.add_dir(path, name=os.path.basename(os.path.abspath(path)))
            else:
                art.add_file(path)

    engine_used = "single"
    if cluster:
        engine_used = "dask" if dask is not None else "ray" if ray is not None else "processes"
    config = {"paths": [str(p.absolute()) for p in paths]}
    with init(project=proj, job_type="push", config=config) as run:
        if cluster:
            art = _log_on_cluster(
                run, art, paths[0], dask, ray, workers, shards, alias or [], tag or [], meta
            )
        else:
            run.log_artifact(art, aliases=alias or [], tags=tag or [])
        history = art.history()
        created = bool(history) and history[0].field == "created" and history[0].run_id == run.id
        run_id = run.id
    info = version_info(art)
    qn = info.qualified_name
    if json_out:
        stats = getattr(art, "stats", None)  # IngestStats of this push, when the SDK has it
        counts = None
        if stats is not None:
            counts = {k: v for k, v in vars(stats).items() if type(v) is int}
        output.print_json(
            {
                "created": created,
                "version": version_json(info),
                "run_id": run_id,
                "stats": counts,
                "engine": engine_used,
            }
        )
        return
    if output.quiet(quiet):
        output.echo(qn)
        return
    extra = [a for a in info.aliases if a != "latest"]
    if created:
        output.echo(
            f"Pushed {qn} ({info.file_count} files, {output.human_size(info.size)}; "
            f"aliases: {', '.join(info.aliases)})"
        )
    else:
        output.echo(f"Nothing changed: the files are identical to {qn}; no new version was made.")
        if alias or tag:
            output.echo(
                f"Aliases now on {qn}: {output.comma(extra)}; tags: {output.comma(info.tags)}"
            )
        if metadata or description is not None:
            output.hint(
                "note: --metadata and --description describe a new version, so they were not "
                f"applied to {qn}"
            )
    output.echo("Use it:")
    output.echo(f'  in Python:     run.use_artifact("{qn}")')
    output.echo(f"  from a shell:  cairn artifact get {qn}")
