"""The one training loop every method runs in (HF Accelerate for devices and processes).

Determinism and resumability by construction:

* the example order of epoch ``e`` is a pure function of ``(seed, e)``;
* the global torch RNG is re-seeded from ``(seed, step, rank)`` before every step,
  so dropout and any sampling inside a method depend only on the step counter;
* a checkpoint stores model, optimizer, scheduler and loop counters.

A run resumed from any checkpoint therefore ends with exactly the metrics of an
uninterrupted run. Under ``accelerate launch`` each global batch is split
across processes and gradients are averaged by an explicit all-reduce over the
trainable parameters only: the frozen teacher is never wrapped or synchronised.
Everything that must agree across processes goes through :mod:`kdforge.engine.distributed`
(every gradient, batch-norm buffers, loss values, the model and evaluation at each
evaluation); random decisions a method shares across processes come from
``Method.shared_rng``, seeded from ``(seed, step)`` alone.

Mixed precision (:mod:`kdforge.engine.precision`): the optimizer is prepared by
Accelerate, fp16 gradients are unscaled before clipping, and a step with non-finite
gradients (any precision) is skipped with the weights kept and counted in
``skipped_steps`` (metrics and summary).

Checkpoints are written at each evaluation, every ``checkpoint_every_steps`` and,
by time, whenever ``checkpoint_every_s`` seconds passed since the last one;
SIGINT/SIGTERM stop at the next step boundary after writing one.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.batchnorm import _NormBase
from tqdm.auto import tqdm

from kdforge.config import RunConfig
from kdforge.data._batches import TensorData, iter_batches, num_batches
from kdforge.engine import checkpoint as ckpt
from kdforge.engine import distributed
from kdforge.engine.interrupt import StopOnSignal, TrainingInterrupted
from kdforge.engine.logger import MetricsLogger, ProgressLine
from kdforge.engine.optim import build_optimizer, build_scheduler
from kdforge.engine.precision import build_accelerator, grads_finite
from kdforge.errors import KdforgeError
from kdforge.methods._base import Method


@dataclass
class LoopState:
    """Counters and early-stopping state saved in every checkpoint."""

    step: int = 0
    best_metric: float = -math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    skipped_steps: int = 0  # optimizer steps skipped for non-finite gradients (fp16 overflow)
    train_time_s: float = 0.0  # wall time in fit(), summed over resumes


class StopTraining(Exception):
    """Raised by a callback to end training at once (used to simulate a killed run)."""


#: consecutive steps with non-finite gradients after which training stops (an fp16 scale
#: halved this often is 2**-9: the gradients are not finite at any scale)
MAX_SKIPPED_IN_A_ROW = 25


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


def _shared_seed(seed: int, step: int) -> int:
    """Seed of ``Method.shared_rng`` at ``step``: the same on every process, unlike :func:`_step_seed`."""
    return (seed * 998_244_353 + step * 15_485_863 + 0x5EED) % (2**63 - 1)


@torch.no_grad()
def evaluate(method: Method, data: TensorData, batch_size: int, device: torch.device) -> dict[str, float]:
    """Accuracy and cross-entropy of the method's student predictions over ``data``."""
    was_training = method.training
    method.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for batch in iter_batches(data, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = method.predict(batch).float()
        y = batch["y"]
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        n += len(y)
    method.train(was_training)
    return {"acc": correct / max(n, 1), "loss": loss_sum / max(n, 1)}


class Trainer:
    """Fit a :class:`Method` on in-memory splits, with checkpoints and resume.

    Args:
        method: the method (student, frozen teacher, extra modules).
        train, val: training and validation splits (validation selects the best checkpoint).
        cfg: the resolved run configuration.
        run_dir: directory for metrics, checkpoints and outputs.
        progress: show a progress bar (main process only).
        callback: called as ``callback(step, losses)`` after each optimizer step.
    """

    def __init__(
        self,
        method: Method,
        train: TensorData,
        val: TensorData,
        cfg: RunConfig,
        run_dir: Path,
        progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        tc = cfg.train
        self.cfg, self.tc, self.method, self.train_data, self.val_data = cfg, tc, method, train, val
        self.run_dir, self.callback = Path(run_dir), callback
        if tc.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.acc = build_accelerator(tc.mixed_precision)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        if cfg.data.batch_size % self.world:
            raise KdforgeError(
                f"data.batch_size={cfg.data.batch_size} is not divisible by {self.world} processes",
                "choose a global batch size that is a multiple of the number of processes",
            )
        self.steps_per_epoch = num_batches(len(train), cfg.data.batch_size, drop_last=True)
        if self.steps_per_epoch == 0:
            raise KdforgeError(
                f"training split has {len(train)} examples, fewer than one batch of {cfg.data.batch_size}",
                "lower data.batch_size or use more data",
            )
        total = tc.epochs * self.steps_per_epoch
        self.total_steps = min(total, tc.max_steps) if tc.max_steps else total
        self.eval_every = tc.eval_every_steps or self.steps_per_epoch
        self.ckpt_every = tc.checkpoint_every_steps or self.eval_every
        method.to(self.acc.device)
        optimizer = build_optimizer(method.param_groups(tc.lr), tc)
        self.scheduler = build_scheduler(optimizer, tc, self.total_steps)
        # prepared: with fp16 its step() goes through the GradScaler (skips on inf, updates the scale).
        # Without a scaler the wrapper only passes calls through, at ~0.2 ms a call (it probes the
        # installed packages each step), so the loop then calls the plain optimizer directly.
        self.optimizer = self.acc.prepare(optimizer)
        self._plain_optimizer = optimizer
        self.params = method.trainable_parameters()
        # running statistics of the trained normalisation layers (batch norm), averaged every step;
        # other buffers are constants (or rank 0's is broadcast at each evaluation)
        teacher = set(method.teacher.modules()) if method.teacher is not None else set()
        self.buffers = [
            stat
            for m in method.modules()
            if isinstance(m, _NormBase) and m.track_running_stats and m not in teacher
            for stat in (m.running_mean, m.running_var)
            if stat is not None
        ]
        # the method and any method it wraps (OPDF wraps a base method): each has a shared_rng
        self.methods = [m for m in method.modules() if isinstance(m, Method)]
        self.skipped_in_a_row = 0
        self.state = LoopState()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.show_progress = progress and self.acc.is_main_process
        self._last_save = time.monotonic()  # clock of the time-based checkpoints
        self._fit_start: float | None = None
        self._time_before = 0.0  # train_time_s restored from a checkpoint

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict[str, Any]:
        return {
            "fingerprint": self.cfg.fingerprint(),
            "loop": asdict(self.state),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
        }

    def save(self, tags: list[str]) -> None:
        """Write a checkpoint for the current step under ``tags`` (main process only)."""
        if self._fit_start is not None:
            self.state.train_time_s = self._time_before + time.perf_counter() - self._fit_start
        self._last_save = time.monotonic()
        if self.acc.is_main_process:
            ckpt.save_checkpoint(
                self.ckpt_dir,
                tags,
                self.state.step,
                self.method.checkpoint_state(),
                self.optimizer.state_dict(),
                self._meta(),
            )
        self.acc.wait_for_everyone()

    def resume(self) -> None:
        """Restore the last checkpoint of this run directory."""
        model, optim, meta = ckpt.load_checkpoint(self.ckpt_dir, "last")
        if not self.cfg.matches_fingerprint(meta.get("fingerprint")):
            raise KdforgeError(
                f"the checkpoint in '{self.ckpt_dir}' was written by a different recipe "
                f"(fingerprint {meta.get('fingerprint')} vs {self.cfg.fingerprint()})",
                "resume with the same recipe and overrides (only train.epochs/max_steps may change), "
                "or use a new run name",
            )
        self.method.load_checkpoint_state(model)
        self.optimizer.load_state_dict(optim)
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.acc.scaler is not None and meta.get("grad_scaler"):
            self.acc.scaler.load_state_dict(meta["grad_scaler"])
        self.state = LoopState(**meta["loop"])

    # ------------------------------------------------------------------ loop
    def _sync_grads(self, values: torch.Tensor) -> torch.Tensor:
        """Average gradients, buffers and the loss terms ``values`` over processes (no-op on one)."""
        return distributed.average_step(self.params, self.buffers, values)

    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        st = self.state
        seed = _step_seed(self.cfg.seed, st.step, self.rank)
        torch.default_generator.manual_seed(seed)  # torch.manual_seed costs ~0.3 ms (all backends)
        if self.acc.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        shared = _shared_seed(self.cfg.seed, st.step)
        for method in self.methods:
            method.shared_rng.manual_seed(shared)
        self.method.on_step_start(st.step, self.total_steps)
        with self.acc.autocast():
            _, losses = self.method.training_step(batch)
        self._plain_optimizer.zero_grad(set_to_none=True)
        # summed without sum()'s leading 0 (an extra op and autograd node per step)
        self.acc.backward(functools.reduce(operator.add, losses.values()))  # fp16: times the scale
        # one all-reduce: every gradient, the buffers and the loss terms, so that all processes
        # log the global batch's loss and take every decision below on the same numbers
        terms = torch.stack([v.detach().float() for v in losses.values()])
        values = dict(zip(losses, self._sync_grads(terms).tolist(), strict=True))
        total = sum(values.values())
        if not math.isfinite(total):
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            last = "checkpoints/last.json" if ckpt.has_checkpoint(self.ckpt_dir) else "none written yet"
            raise KdforgeError(
                f"loss became non-finite at step {st.step} (terms {bad}: {values}); training stopped, "
                f"the last good checkpoint is kept ({last})",
                "lower train.lr, set train.grad_clip, or check the data for NaN/inf values",
            )
        self.acc.unscale_gradients(self.optimizer)  # fp16: true gradients from here on; else no-op
        if self.tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.tc.grad_clip)
        skipped = self._optimizer_step()
        if not skipped:
            self.scheduler.step()  # a skipped step leaves the schedule where it was (as Accelerate does)
        st.step += 1
        values["loss"] = total
        values["skipped_steps"] = st.skipped_steps
        if self.acc.scaler is not None:
            values["loss_scale"] = self.acc.scaler.get_scale()
        return values

    def _optimizer_step(self) -> bool:
        """Step unless the gradients hold inf/NaN; count skips; return whether the step was skipped.

        With fp16 the prepared optimizer asks the GradScaler (which found the infs while
        unscaling, and halves its scale); otherwise the gradients are checked here. Gradients
        are equal on every process by now, so every process takes the same decision.
        """
        if self.acc.scaler is not None:
            self.optimizer.step()
            skipped = self.optimizer.step_was_skipped
        else:
            skipped = not grads_finite(self.params)
            if not skipped:
                self._plain_optimizer.step()
        if not skipped:
            self.skipped_in_a_row = 0
            return False
        self.state.skipped_steps += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            last = "checkpoints/last.json" if ckpt.has_checkpoint(self.ckpt_dir) else "none written yet"
            raise KdforgeError(
                f"{self.skipped_in_a_row} optimizer steps in a row had inf/NaN gradients (last at step "
                f"{self.state.step}, precision {self.tc.mixed_precision}); training stopped, the last good "
                f"checkpoint is kept ({last})",
                "lower train.lr, set train.grad_clip, use mixed_precision=bf16 instead of fp16, or check "
                "the model for overflowing activations",
            )
        return True

    def _evaluate_and_checkpoint(self, logger: MetricsLogger, bar) -> None:
        st = self.state
        # every process continues from, evaluates and checkpoints rank 0's model, and takes
        # rank 0's evaluation for the best-model and early-stopping decisions
        distributed.broadcast_tensors(list(self.method.checkpoint_state().values()))
        ev = evaluate(self.method, self.val_data, self.cfg.data.eval_batch_size, self.acc.device)
        ev["acc"], ev["loss"] = distributed.broadcast_values([ev["acc"], ev["loss"]], self.acc.device)
        metric = ev["acc"] if self.tc.monitor == "val_acc" else -ev["loss"]
        improved = metric > st.best_metric
        if improved:
            st.best_metric, st.best_step, st.bad_evals = metric, st.step, 0
        else:
            st.bad_evals += 1
        patience = self.tc.early_stopping_patience
        st.stopped_early = bool(patience and st.bad_evals >= patience)
        logger.log(
            {
                "step": st.step,
                "epoch": st.step / self.steps_per_epoch,
                "val_acc": ev["acc"],
                "val_loss": ev["loss"],
            }
        )
        if bar is not None:
            bar.set_postfix_str(f"val_acc={ev['acc']:.4f}", refresh=False)
        self.save(["last", "best"] if improved else ["last"])

    def _due(self, stop: StopOnSignal) -> tuple[int, bool]:
        """(signal number or 0, whether a time-based checkpoint is due), agreed by every rank."""
        every = self.tc.checkpoint_every_s
        due = bool(every) and time.monotonic() - self._last_save >= every
        signum = stop.signum or 0
        if self.world > 1:  # ranks must take the same branch: save() waits for everyone
            flags = torch.tensor([signum, int(due)], device=self.acc.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            signum, due = int(flags[0]), bool(flags[1])
        return signum, due

    def fit(self, resume: bool = False) -> LoopState:
        """Train until ``total_steps`` (or early stopping); returns the final loop state.

        Raises:
            TrainingInterrupted: on SIGINT/SIGTERM, after a checkpoint of the current step.
        """
        if resume:
            self.resume()
        elif ckpt.has_checkpoint(self.ckpt_dir):
            raise KdforgeError(
                f"run directory '{self.run_dir}' already holds a checkpoint",
                "pass --resume to continue it, or choose another run name / output_dir "
                "(nothing was overwritten)",
            )
        if self.acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        logger = MetricsLogger(self.run_dir, self.state.step if resume else None, self.acc.is_main_process)
        st = self.state
        on_terminal = sys.stderr.isatty()
        bar = tqdm(
            total=self.total_steps,
            initial=st.step,
            disable=not (self.show_progress and on_terminal),
            desc=self.cfg.name,
            unit="step",
            dynamic_ncols=True,
        )
        # Redirected output gets a plain line now and then instead of a bar.
        line = ProgressLine(self.cfg.name, self.total_steps, st.step, self.tc.progress_every_s)
        line.enabled = self.show_progress and not on_terminal
        self.method.train()
        t0 = time.perf_counter()
        self._time_before, self._fit_start = st.train_time_s, t0
        self._last_save = time.monotonic()
        stop = StopOnSignal()  # SIGINT/SIGTERM: checkpoint this step, then TrainingInterrupted
        stop.install()
        try:
            while st.step < self.total_steps and not st.stopped_early:
                epoch, start = divmod(st.step, self.steps_per_epoch)
                batches = iter_batches(
                    self.train_data,
                    self.cfg.data.batch_size,
                    seed=self.cfg.seed,
                    epoch=epoch,
                    start=start,
                    drop_last=True,
                    rank=self.rank,
                    world=self.world,
                )
                for batch in batches:
                    batch = {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}
                    values = self._train_step(batch)
                    if st.step % self.tc.log_every_steps == 0 or st.step == self.total_steps:
                        lr = self.scheduler.get_last_lr()[0]
                        logger.log({"step": st.step, "lr": lr, **values, "time": time.perf_counter() - t0})
                        bar.set_description(f"{self.cfg.name} loss={values['loss']:.4f}", refresh=False)
                    bar.update(1)
                    line.update(st.step, values["loss"])
                    if self.callback is not None:
                        self.callback(st.step, values)
                    signum, time_due = self._due(stop)
                    if st.step % self.eval_every == 0 or st.step == self.total_steps:
                        self._evaluate_and_checkpoint(logger, bar)
                    elif st.step % self.ckpt_every == 0 or time_due or signum:
                        self.save(["last"])
                    if signum:
                        raise TrainingInterrupted(signum, st.step, str(self.run_dir))
                    if st.step >= self.total_steps or st.stopped_early:
                        break
        finally:
            stop.restore()
            bar.close()
            logger.close()
        st.train_time_s = self._time_before + time.perf_counter() - t0
        self._fit_start = None
        return st

    def load_best(self) -> None:
        """Load the best (validation-selected) weights into the method."""
        if ckpt.has_checkpoint(self.ckpt_dir, "best"):
            model, _, _ = ckpt.load_checkpoint(self.ckpt_dir, "best")
            self.method.load_checkpoint_state(model)
