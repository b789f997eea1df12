"""Start-up time of ``kdforge --help`` and ``kdforge list`` beside bare Python start-up.

Each round runs every command once, in an order rotated from round to round, so the
commands share the machine's load (this CPU is shared and noisy); the figure per
command is the median wall time over the rounds. The child's CPU time (user + system)
is recorded too: on a loaded machine wall time waits for a core, CPU time does not.
``python -c "import torch"`` is timed alongside as the cost the lazy imports avoid.
Target: ``kdforge --help`` within 0.3 s (wall) of ``python -c pass``.

Run: ``python benchmarks/cli_startup.py [--rounds 21]``
Writes ``benchmarks/results/cli_startup.{json,md}``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kdforge.report.provenance import provenance, write_results

TARGET_S = 0.3  # --help at most this much slower than bare Python


def commands() -> dict[str, list[str]]:
    """What is timed: the console script when installed beside this Python, else ``-m``."""
    script = Path(sys.executable).parent / "kdforge"
    kdforge = [str(script)] if script.exists() else [sys.executable, "-m", "kdforge.cli"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kdforge --help": [*kdforge, "--help"],
        "kdforge list": [*kdforge, "list"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run (output discarded; a failing command aborts the benchmark)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def measure(rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per command, its (wall, CPU) times over ``rounds`` rotated rounds (after a warm-up round)."""
    cmds = commands()
    names = list(cmds)
    for name in names:  # warm the file cache
        time_once(cmds[name])
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w, c = time_once(cmds[name])
            wall[name].append(w)
            cpu[name].append(c)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", default="benchmarks/results/cli_startup.json")
    args = parser.parse_args()
    times, cpu_times = measure(args.rounds)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    cpu = {name: statistics.median(ts) for name, ts in cpu_times.items()}
    base = median["python -c pass"]
    over = {name: median[name] - base for name in median}
    results = {
        "median_s": median,
        "over_python_s": over,
        "median_cpu_s": cpu,
        "cpu_over_python_s": {name: cpu[name] - cpu["python -c pass"] for name in cpu},
        "times_s": times,
        "cpu_times_s": cpu_times,
        "target_help_over_python_s": TARGET_S,
        "meets_target": over["kdforge --help"] <= TARGET_S,
        "kdforge_command": commands()["kdforge --help"][:-1],
        "provenance": provenance(
            config={"rounds": args.rounds, "order": "rotated each round", "statistic": "median"},
            command=" ".join(["python", *sys.argv]),
        ),
    }
    rows = [
        "| command | wall s (median) | wall over `python -c pass` s | CPU s (median) |",
        "|---|---|---|---|",
    ]
    rows += [f"| `{name}` | {median[name]:.3f} | {over[name]:+.3f} | {cpu[name]:.3f} |" for name in median]
    verdict = "met" if results["meets_target"] else "missed"
    md = (
        f"# CLI start-up ({args.rounds} rounds side by side, medians)\n\n"
        + "\n".join(rows)
        + f"\n\nTarget `kdforge --help` within {TARGET_S} s of bare Python: **{verdict}** "
        f"({over['kdforge --help']:+.3f} s)."
    )
    write_results(args.out, results, md)
    print(md)


if __name__ == "__main__":
    main()
