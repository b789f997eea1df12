"""EAsT / EC with a real pre-trained audio teacher (GE2E speaker encoder) on generated speech.

Two tasks (``--task``, :data:`kdforge.experiments.audio_ec.TASKS`): ``words`` (which word, split by
voice; dissimilar to the teacher's training; also scored on the 36 real Asterisk recordings) and
``voices`` (which voice, split by word; similar). Rows: baseline CNN, EAsT-FitNet/dCor, EC-FitNet/dCor
at each d, KD from the teacher's probe, the fine-tuned teacher and its linear probe; every row chooses
among the same number of settings on validation (:class:`~kdforge.experiments.audio_ec.AudioEcGrid`).
Protocol: :mod:`kdforge.experiments.audio_ec`; verdicts and tables: ``audio_ec_report``.

Usage (after ``make data-audio``, ``kdforge data speech-words --out data/speech-words --asterisk
data/asterisk-words``)::

    python benchmarks/east_audio.py --task words --per-class 5 --out benchmarks/results/east_audio_words
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdforge.experiments.audio_ec import TASKS, AudioEcGrid, AudioPaths, run_benchmark
from kdforge.experiments.audio_ec_report import write
from kdforge.report.provenance import provenance

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "east_audio"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="words")
    p.add_argument("--data", default="data/speech-words")
    p.add_argument("--unseen", default="data/asterisk-words")
    p.add_argument("--cache", type=Path, default=None, help="teacher embedding cache (default DATA-ge2e)")
    p.add_argument("--runs", type=Path, default=Path("runs/east_audio"))
    p.add_argument("--per-class", type=int, nargs="+", default=[5, 20])
    grid = AudioEcGrid()
    for name, value in vars(grid).items():
        kind = type(value[0]) if isinstance(value, list) else type(value)
        p.add_argument(
            f"--{name.replace('_', '-')}", type=kind, nargs="+" if isinstance(value, list) else None
        )
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (default all)")
    p.add_argument(
        "--finished-only", action="store_true", help="train nothing: score the rows whose trials all finished"
    )
    p.add_argument("--note", default=None, help="a line for the results file (e.g. why the grid is small)")
    p.add_argument("--out", default="benchmarks/results/east_audio_words")
    p.add_argument(
        "--render", action="store_true", help="only re-write the markdown and figure from OUT.json"
    )
    args = p.parse_args()
    args.out = args.out.removesuffix(".json")  # OUT or OUT.json: the results file's stem
    if args.render:
        write(json.loads(Path(f"{args.out}.json").read_text()), args.out, render_only=True)
        return
    for name in vars(grid):
        if getattr(args, name) is not None:
            setattr(grid, name, getattr(args, name))
    cache = args.cache or Path(f"{args.data.rstrip('/')}-ge2e")
    paths = AudioPaths(args.data, args.unseen, cache, args.runs / args.task, CONFIGS)

    prov = provenance({**vars(args), "grid": dict(vars(grid))}, grid.seeds)  # the commit at the start

    def save(results: dict) -> None:  # after every row: a killed benchmark keeps what it measured
        write({**results, "provenance": prov}, args.out)

    run_benchmark(
        TASKS[args.task], grid, paths, args.per_class, save, args.rows, args.note, args.finished_only
    )


if __name__ == "__main__":
    main()
