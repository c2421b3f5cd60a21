"""Cairn: version the data machine-learning work reads and writes, with lineage for free.

run = cairn.init(project="my-project", job_type="training")
art = cairn.Artifact("training-data", type="dataset")
art.add_dir("data/")
run.log_artifact(art, aliases=["best"])
"""

from cairn import errors
from cairn._version import __version__
from cairn.sdk.api import Api
from cairn.sdk.artifact import Artifact, ArtifactFile
from cairn.sdk.run import Run, current_run, finish, init, log, log_artifact, use_artifact

__all__ = [
    "Api",
    "Artifact",
    "ArtifactFile",
    "Run",
    "__version__",
    "current_run",
    "errors",
    "finish",
    "init",
    "log",
    "log_artifact",
    "use_artifact",
]
