"""MPO speed: decomposition (ours vs tensorly), training-step cost, collapsed inference latency.

Usage::

    PYTHONPATH=src python benchmarks/mpo_speed.py [--repeats 3] [--threads 1]
    PYTHONPATH=src python benchmarks/mpo_speed.py --render  # re-render the markdown from the JSON

Writes ``benchmarks/results/mpo_speed.json`` and ``.md``. Every figure is a
median over ``--repeats`` timings taken side by side in this one process
(protocol: :mod:`kdforge.experiments.mpo_speed`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy (tensorly) single-threaded like torch below
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from kdforge.experiments import mpo_speed as bench  # noqa: E402
from kdforge.experiments.mpo_speed_table import mpo_speed_markdown  # noqa: E402
from kdforge.report.provenance import provenance, write_results  # noqa: E402
from kdforge.report.results import rerender_results  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "mpo_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 128, 2048])
    ap.add_argument(
        "--tokens", type=int, nargs="+", default=[32, 128], help="NLP student sequence lengths (32: recipes)"
    )
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, mpo_speed_markdown))
        return
    torch.set_num_threads(args.threads)
    res = {
        "decomposition": bench.bench_decomposition(args.repeats),
        "train_step": bench.bench_train_step(args.repeats, args.rows),
        "student": bench.bench_student(args.repeats),
        "bert_student": [bench.bench_bert_student(args.repeats, seq=t) for t in args.tokens],
    }
    cfg = {"repeats": args.repeats, "threads": args.threads, "rows": args.rows, "tokens": args.tokens}
    res["provenance"] = provenance(cfg, command=" ".join(["python", *sys.argv]))
    write_results(args.out, res, mpo_speed_markdown(res))
    print(mpo_speed_markdown(res))


if __name__ == "__main__":
    main()
