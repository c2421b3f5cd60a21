"""One flat folder of many small files (issue 12's "a single folder of 1M entries"), seeded.

    python bench/gen_flat.py /work/benchdata/flat1m [--files 1000000]

Files ``item-00000000.bin`` ... of 64-256 random bytes, all in OUT itself. Then measure with
``bench/scale.py OUT --steps log,relog,download,again``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    total = 0
    for i in range(args.files):
        data = rng.randbytes(rng.randint(64, 256))
        (args.out / f"item-{i:08d}.bin").write_bytes(data)
        total += len(data)
    print(f"{args.files} files, {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
