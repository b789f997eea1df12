"""Ctrl-C and SIGTERM as requests to stop at the next step boundary.

While :class:`StopOnSignal` is active, SIGINT and SIGTERM only record that a stop
was asked for; the training loop polls :attr:`StopOnSignal.signum` after each
optimizer step, writes a checkpoint for that step and raises
:class:`TrainingInterrupted`. The first signal also restores the previous
handlers, so a second Ctrl-C stops at once (checkpoint writes are atomic, so even
that leaves the last complete checkpoint intact).

Exit status convention (shells, schedulers): 128 + signal number, i.e. 130 for
SIGINT and 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

from kdforge.errors import KdforgeError

#: The signals a run turns into "save and stop".
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``SIGINT`` / ``SIGTERM`` for a signal number."""
    return signal.Signals(signum).name


class TrainingInterrupted(KdforgeError):
    """Training stopped on a signal after saving a checkpoint at ``step``.

    Args:
        signum: the signal received.
        step: the step of the checkpoint written (``None`` when none could be written).
        run_dir: the run directory.
    """

    def __init__(self, signum: int, step: int | None, run_dir: str) -> None:
        saved = (
            f"checkpoint saved at step {step} in '{run_dir}/checkpoints'"
            if step is not None
            else "no checkpoint was written"
        )
        super().__init__(
            f"training interrupted by {signal_name(signum)}; {saved}",
            "continue it with the same command plus --resume",
        )
        self.signum, self.step, self.run_dir = signum, step, run_dir
        self.exit_code = 128 + signum


class StopOnSignal:
    """Context manager recording SIGINT/SIGTERM instead of raising (main thread only).

    Outside the main thread (where Python cannot install handlers) it does nothing
    and :attr:`signum` stays ``None``.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.restore()  # a second signal acts at once

    def install(self) -> None:
        """Record SIGINT/SIGTERM from now on (until :meth:`restore`)."""
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> StopOnSignal:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()
