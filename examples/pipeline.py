"""A small real ML pipeline versioned with Cairn.

dataset-creation -> training -> evaluation, then a second dataset version and a fine-tuning
run from the evaluated model. Runs on the embedded store (CAIRN_DIR) with NumPy only. The
pipeline itself lives in `cairn.demo` (so `cairn init-demo` runs the same thing).

    python examples/pipeline.py [--project demo] [--rows 2000]
"""

from __future__ import annotations

import argparse

from cairn.demo import run_demo, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", default="demo")
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    run_demo(args.project, args.rows)
    print(summary(args.project))


if __name__ == "__main__":
    main()
