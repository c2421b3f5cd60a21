"""One Cairn operation as a whole process, for the benchmark: log a path or download a version.

python bench/cairn_op.py log NAME PATH
python bench/cairn_op.py download NAME:VER DEST
"""

from __future__ import annotations

import json
import sys

import cairn


def main() -> None:
    op, target, path = sys.argv[1:4]
    with cairn.init(project="bench", job_type=f"bench-{op}", save_code=False) as run:
        if op == "log":
            art = cairn.Artifact(target, type="dataset")
            import os

            if os.path.isdir(path):
                art.add_dir(path)
            else:
                art.add_file(path)
            run.log_artifact(art)
            stats = art.stats
            out = {
                "version": art.version,
                "new_bytes": stats.new_bytes,
                "new_objects": stats.new_objects,
                "hashed_files": stats.hashed_files,
            }
        else:
            art = run.use_artifact(target)
            art.download(root=path)
            out = {"version": art.version, "files": art.file_count}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
