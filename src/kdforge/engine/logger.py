"""Metrics to JSONL (always) and TensorBoard (when installed); progress lines for logs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends one JSON object per line to ``metrics.jsonl``.

    On resume, rows written after the checkpoint's step are dropped so that the
    file matches an uninterrupted run.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            rows = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
            kept = [r for r in rows if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        try:  # optional
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))
        except Exception:  # tensorboard not installed
            self._tb = None

    def log(self, row: dict[str, Any]) -> None:
        """Write one row (must contain ``step``)."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k != "step":
                    self._tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._tb is not None:
            self._tb.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLine:
    """One plain progress line every ``every_s`` seconds, for output that is not a terminal.

    A log file or CI console gets ``name: step 120/1407 (8.5%), loss 0.4321, 12.3 steps/s,
    ETA 1m45s`` instead of nothing (a progress bar needs a terminal).

    Args:
        name: the run name the line starts with.
        total: the step count the run ends at.
        start: the step training starts (or resumes) from.
        every_s: seconds between lines (``None`` or 0: never).
        stream: where lines go (default: standard error).
    """

    def __init__(self, name: str, total: int, start: int, every_s: float | None, stream=None) -> None:
        self.name, self.total, self.every_s = name, total, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(every_s)
        self._start_step, self._start_time = start, time.monotonic()
        self._last = self._start_time

    def update(self, step: int, loss: float) -> None:
        """Print a line if ``every_s`` seconds passed since the last one (or since the start)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        rate = (step - self._start_step) / max(now - self._start_time, 1e-9)
        eta = _duration((self.total - step) / rate) if rate > 0 else "?"
        print(
            f"{self.name}: step {step}/{self.total} ({100 * step / self.total:.1f}%), loss {loss:.4f}, "
            f"{rate:.1f} steps/s, ETA {eta}",
            file=self.stream,
            flush=True,
        )


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
