"""Start-up time of the ``kdforge`` command beside bare Python: measurement and its table.

Each round runs every command once, in an order rotated from round to round, so the commands
share the machine's load; the figure per command is the median over the rounds, for wall time
and for the child's CPU time (user + system: on a loaded machine wall time waits for a core,
CPU time does not).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BARE = "python -c pass"
HELP = "kdforge --help"
TARGET_S = 0.3  # --help at most this much slower (wall) than bare Python


def commands() -> dict[str, list[str]]:
    """What is timed: the console script when installed beside this Python, else ``-m kdforge.cli``."""
    script = Path(sys.executable).parent / "kdforge"
    kdforge = [str(script)] if script.exists() else [sys.executable, "-m", "kdforge.cli"]
    return {
        BARE: [sys.executable, "-c", "pass"],
        HELP: [*kdforge, "--help"],
        "kdforge list": [*kdforge, "list"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run (output discarded; a failing command raises)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def measure(cmds: dict[str, list[str]], rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per command, its (wall, CPU) times over ``rounds`` rotated rounds (after a warm-up round)."""
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


def startup_results(wall: dict[str, list[float]], cpu: dict[str, list[float]], command: list[str]) -> dict:
    """Medians, their excess over bare Python and the target check (``command``: how kdforge was run)."""
    median = {name: statistics.median(ts) for name, ts in wall.items()}
    cpu_median = {name: statistics.median(ts) for name, ts in cpu.items()}
    over = {name: median[name] - median[BARE] for name in median}
    return {
        "median_s": median,
        "over_python_s": over,
        "median_cpu_s": cpu_median,
        "cpu_over_python_s": {name: cpu_median[name] - cpu_median[BARE] for name in cpu_median},
        "times_s": wall,
        "cpu_times_s": cpu,
        "target_help_over_python_s": TARGET_S,
        "meets_target": over[HELP] <= TARGET_S,
        "kdforge_command": command,
    }


def startup_markdown(res: dict[str, Any]) -> str:
    """The table of medians and the verdict, from a results dict alone."""
    median, over, cpu = res["median_s"], res["over_python_s"], res["median_cpu_s"]
    rows = [
        f"| command | wall s (median) | wall over `{BARE}` s | CPU s (median) |",
        "|---|---|---|---|",
    ]
    rows += [f"| `{name}` | {median[name]:.3f} | {over[name]:+.3f} | {cpu[name]:.3f} |" for name in median]
    verdict = "met" if res["meets_target"] else "missed"
    return (
        f"# CLI start-up ({res['provenance']['config']['rounds']} rounds side by side, medians)\n\n"
        + "\n".join(rows)
        + f"\n\nTarget `{HELP}` within {res['target_help_over_python_s']} s of bare Python: **{verdict}** "
        f"({over[HELP]:+.3f} s)."
    )
