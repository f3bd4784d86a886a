"""Ingest + validation throughput and peak RSS for synthetic pairs at 32×32.

Each size runs in its own process, so peak RSS is that run's alone:

    python benchmarks/ingest.py                 # 10k, 100k, 1M
    python benchmarks/ingest.py --sizes 10000   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402


def one_run(pairs: int, image_size: int) -> dict:
    """Ingest ``pairs`` synthetic pairs into a temporary folder; time it."""
    from bitlatent.data.config import DataConfig
    from bitlatent.data.ingest import ingest

    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        config = DataConfig(format="synthetic", image_size=image_size, max_pairs=pairs,
                            scratch_dir=str(workdir))
        start = time.perf_counter()
        result = ingest(config, workdir / "shards", progress=False)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"pairs": pairs, "image_size": image_size, "seconds": round(seconds, 2),
            "pairs_per_second": round(pairs / seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
            "accepted": int(result.report["accepted_rows"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.sizes[0], args.image_size)))
        return
    rows = []
    for pairs in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--child", "--sizes", str(pairs),
                               "--image-size", str(args.image_size)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    path = write_result("ingest", {"machine": machine(), "runs": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
