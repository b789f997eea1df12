"""EAsT / EC with a pre-trained audio teacher on generated speech: the rows, their grids, the runs.

The data is ``kdforge data speech-words`` (espeak-ng + flite voices, a manifest with voice, accent,
speed and pitch per clip). The teacher is the GE2E speaker encoder (``ge2e_classifier``). A
:class:`AudioTask` says what is predicted and how the clips are split, so one protocol measures:

- ``words`` (dissimilar to the teacher's training): which of 36 words is spoken, split by *voice*
  (the generator's ``split`` column); the 36 Asterisk studio recordings are an unseen real-speech set.
- ``voices`` (similar): which of the 58 voices is speaking, split by *word* (``label_column=voice``,
  ``group_column=label``): the test words are never heard in training, so a model must know the voice,
  not the word. This is what the teacher was trained for (who speaks).

Every row gets a grid of the same size (:class:`AudioEcGrid`), chosen on validation (mean over seeds):
the baseline its learning rate, EAsT/EC their lambda (each d its own), the fine-tuned teacher its
learning rate, KD-from-probe its KD weight, the probes their C. Test and the unseen set are only scored.
Markdown, verdicts and the figure are in :mod:`kdforge.experiments.audio_ec_report`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdforge.data import load_dataset
from kdforge.data.audio_folder import clip_features, read_manifest
from kdforge.data.embeddings import all_rows, attach, extract, load, module_embedder
from kdforge.engine.run import load_student
from kdforge.errors import KdforgeError
from kdforge.experiments.selection import select_best
from kdforge.experiments.sweep import all_finished, make_trials, run_sweep
from kdforge.models import build_model

TEACHER = "ge2e_classifier"
TEACHER_PATH = "encoder"  # the L2-normalised utterance embedding (256-d)
N_MELS = 40


@dataclass(frozen=True)
class AudioTask:
    """What the rows predict and how the clips are split.

    Attributes:
        name: Short name (``words`` / ``voices``), used in run and results names.
        title: One line for the results table.
        design: Why this task, in a sentence or two (written into the results file).
        data_kwargs: ``audio_folder`` options beyond the manifest (``label_column``, ``group_column``,
            ``test_fraction``); empty: the word label and the generator's split by voice.
        unseen: Whether the Asterisk recordings share the label space (scored without training).
    """

    name: str
    title: str
    design: str
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    unseen: bool = True


TASKS = {
    "words": AudioTask(
        "words",
        "which word (36 classes), test voices unseen in training",
        "Dissimilar to the teacher's task: the speaker encoder was trained to tell who speaks, the "
        "student must tell what is said. Split by voice (the generator's split column).",
    ),
    "voices": AudioTask(
        "voices",
        "which voice (58 classes), test words unseen in training",
        "Similar to the teacher's task: the label is the synthesiser voice (espeak-ng accent x variant x "
        "speed x pitch, or a flite voice), the split is by word (a fifth of the 36 words are test words, "
        "never heard in training), so a model must recognise the voice on words it has not heard.",
        {"label_column": "voice", "group_column": "label", "test_fraction": 0.2},
        unseen=False,
    ),
}


@dataclass
class AudioEcGrid:
    """The grids chosen on validation, one per row kind, all of the same size (the tuning budget).

    Attributes:
        seeds: Run seeds of every row.
        lams: Lambda of every EAsT/EC row (loss = (1 - lambda) * task + lambda * distance).
        ds: Compressed sizes; each is its own EC row with its own lambda.
        baseline_lrs: Learning rates of the baseline student (its budget matches a lambda grid).
        finetune_lrs: Learning rates of the fine-tuned teacher.
        kd_weights: KD weights of the student distilled from the teacher's linear probe.
        probe_cs: Inverse L2 strengths of the logistic-regression probes.
        epochs: Student epochs (checkpoint chosen on validation).
        finetune_epochs: Epochs of the fine-tuned teacher (an LSTM: slower per epoch).
        eval_every_steps: Validation (and checkpoint choice) interval; evaluating the whole
            validation split after every epoch cost more CPU than the training steps.
        batch_size: Training batch size (``None``: the recipes' 32).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lams: list[float] = field(default_factory=lambda: [0.3, 0.7])
    ds: list[int] = field(default_factory=lambda: [32, 8, 128])
    baseline_lrs: list[float] = field(default_factory=lambda: [0.003, 0.01])
    finetune_lrs: list[float] = field(default_factory=lambda: [0.0003, 0.001])
    kd_weights: list[float] = field(default_factory=lambda: [0.3, 1.0])
    probe_cs: list[float] = field(default_factory=lambda: [1.0, 10.0])
    epochs: int = 30
    finetune_epochs: int = 10
    eval_every_steps: int = 15
    batch_size: int | None = None

    def budget(self) -> int:
        """Settings each row is chosen from.

        Raises:
            KdforgeError: when the grids differ in size (a row tuned more than the rows it is compared with).
        """
        sizes = {
            "lams": len(self.lams),
            "baseline_lrs": len(self.baseline_lrs),
            "finetune_lrs": len(self.finetune_lrs),
            "kd_weights": len(self.kd_weights),
            "probe_cs": len(self.probe_cs),
        }
        if len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise KdforgeError(
                f"unequal tuning budgets {sizes}: a row would be tuned more than those it is compared with",
                "give every grid the same number of values",
            )
        return sizes["lams"]


@dataclass(frozen=True)
class RowSpec:
    """One trained row: a recipe of ``configs/east_audio``, fixed overrides, and its grid."""

    recipe: str
    overrides: tuple[str, ...]
    grid: dict[str, list]
    teacher_emb: bool = False  # reads the cached teacher embedding (data ``with_teacher_emb``)
    finetune: bool = False  # trains the teacher itself (``finetune_epochs``)


def row_specs(grid: AudioEcGrid) -> dict[str, RowSpec]:
    """Label -> row, in the order they run (priority under a small CPU budget)."""
    lam = {"method.kwargs.lam": list(grid.lams)}
    rows = {"baseline": RowSpec("words_baseline.yaml", (), {"train.lr": list(grid.baseline_lrs)})}
    losses = (("fitnet", "FitNet"), ("dcor", "dCor"))
    for loss, name in losses:
        east = ("method.kwargs.compress=false", f"method.kwargs.loss={loss}")
        rows[f"EAsT-{name}"] = RowSpec("words_ec.yaml", east, lam, teacher_emb=True)
    for d in grid.ds:
        for loss, name in losses:
            ec = ("method.kwargs.compress=true", f"method.kwargs.loss={loss}", f"method.kwargs.d={d}")
            rows[f"EC-{name}-d{d}"] = RowSpec("words_ec.yaml", ec, lam, teacher_emb=True)
    kd = ("method.kwargs.compress=false", "method.kwargs.lam=0.0")
    rows["KD-from-probe"] = RowSpec(
        "words_ec.yaml", kd, {"method.kwargs.kd_weight": list(grid.kd_weights)}, teacher_emb=True
    )
    rows["teacher fine-tuned"] = RowSpec(
        "words_teacher_probe.yaml",
        ("student.kwargs.freeze_encoder=false",),
        {"train.lr": list(grid.finetune_lrs)},
        finetune=True,
    )
    return rows


def data_kwargs(task: AudioTask) -> dict[str, Any]:
    """``audio_folder`` options of the task (the manifest always)."""
    return {"manifest": "manifest.csv", **task.data_kwargs}


def run_overrides(
    spec: RowSpec, task: AudioTask, grid: AudioEcGrid, data: str, cache: Path, per_class: int
) -> list[str]:
    """The overrides that put a row's recipe on this data, task, regime and length."""
    prefix = "data.kwargs.base_kwargs" if spec.teacher_emb else "data.kwargs"
    out = [*spec.overrides, f"data.data_dir={data}", f"{prefix}.per_class={per_class}"]
    out += [f"{prefix}.{k}={v}" for k, v in task.data_kwargs.items()]
    out.append(f"train.epochs={grid.finetune_epochs if spec.finetune else grid.epochs}")
    out.append(f"train.eval_every_steps={grid.eval_every_steps}")
    if grid.batch_size is not None:
        out.append(f"data.batch_size={grid.batch_size}")
    if spec.teacher_emb:
        out += [f"data.kwargs.cache={cache / TEACHER_PATH}", f"data.kwargs.model={TEACHER}@{TEACHER_PATH}"]
    return out


def load_splits(data: str, task: AudioTask, **kwargs: Any):
    """The task's ``audio_folder`` splits (the test split does not depend on ``seed``)."""
    return load_dataset("audio_folder", data_dir=data, **data_kwargs(task), **kwargs)


def teacher(num_classes: int) -> torch.nn.Module:
    """The GE2E encoder with a seeded word head: the cache's weight fingerprint covers the whole model,
    so an unseeded head would make every process's extraction look like another model's."""
    torch.manual_seed(0)
    return build_model(TEACHER, (1, N_MELS, 101), num_classes).eval()


def cache_embeddings(data: str, cache: Path) -> None:
    """The teacher's utterance embedding of every clip (resumable; shared by both tasks)."""
    splits = load_dataset("audio_folder", data_dir=data, manifest="manifest.csv")
    net = teacher(splits.num_classes)
    extract(
        module_embedder(net, TEACHER_PATH),
        all_rows(splits),
        cache / TEACHER_PATH,
        dataset="audio_folder",
        split="all",
        model=f"{TEACHER}@{TEACHER_PATH}",
        progress=False,
    )


def unseen_set(data: str, unseen: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mels and word labels of the Asterisk recordings (``kdforge data asterisk-words``)."""
    rows = read_manifest(Path(unseen) / "manifest.csv")
    classes = sorted({r["label"] for r in read_manifest(Path(data) / "manifest.csv")})
    x = clip_features([Path(unseen) / r["path"] for r in rows], mel={"n_mels": N_MELS})
    return x, torch.tensor([classes.index(r["label"]) for r in rows])


@torch.no_grad()
def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """1.0 where ``model`` predicts ``y``, per example (empty for an empty set)."""
    if len(x) == 0:
        return np.zeros(0)
    model.eval()
    pred = torch.cat([model(x[i : i + 256]).argmax(-1) for i in range(0, len(x), 256)])
    return (pred == y).double().numpy()


def make_row(scores: list[dict[str, np.ndarray]], chosen: dict, times: list[float], seeds: list[int]) -> dict:
    """A results row: accuracies per seed, per-example correctness (for paired intervals), the choice."""
    return {
        "chosen": chosen,
        "seeds": seeds,
        "val_acc": [float(s["val"].mean()) for s in scores],
        "test_acc": [float(s["test"].mean()) for s in scores],
        "unseen_acc": [float(s["unseen"].mean()) for s in scores if len(s["unseen"])],
        "test_correct": [s["test"].tolist() for s in scores],
        "unseen_correct": [s["unseen"].tolist() for s in scores if len(s["unseen"])],
        "train_time_s": times,
    }


def choose(by_setting: dict[Any, list[dict]]) -> Any:
    """The setting with the best mean validation accuracy over seeds (ties: the first listed)."""
    return max(by_setting, key=lambda k: statistics.mean(float(s["val"].mean()) for s in by_setting[k]))


def probe_rows(
    task: AudioTask, grid: AudioEcGrid, data: str, cache: Path, per_class: int, unseen: tuple | None
) -> dict[str, dict]:
    """Logistic regression on the cached teacher embedding, C chosen on validation (mean over seeds)."""
    from sklearn.linear_model import LogisticRegression

    emb, hashes, _ = load(cache / TEACHER_PATH)
    unseen_emb = torch.zeros(0, emb.shape[1])
    unseen_y = torch.zeros(0, dtype=torch.long)
    if unseen is not None:
        embed = module_embedder(teacher(36), TEACHER_PATH)
        with torch.no_grad():
            unseen_emb = torch.cat(
                [embed({"x": unseen[0][i : i + 64]}) for i in range(0, len(unseen[0]), 64)]
            )
        unseen_y = unseen[1]
    by_c: dict[float, list[dict]] = {c: [] for c in grid.probe_cs}
    times: dict[float, list[float]] = {c: [] for c in grid.probe_cs}
    for seed in grid.seeds:
        splits = load_splits(data, task, per_class=per_class, seed=seed)
        feats = {s: attach(getattr(splits, s), emb, hashes).tensors for s in ("train", "val", "test")}
        for c in grid.probe_cs:
            t0 = time.perf_counter()
            clf = LogisticRegression(C=c, max_iter=2000).fit(
                feats["train"]["teacher_emb"], feats["train"]["y"]
            )
            times[c].append(time.perf_counter() - t0)
            scores = {
                s: (clf.predict(feats[s]["teacher_emb"]) == feats[s]["y"].numpy()).astype(float)
                for s in ("val", "test")
            }
            unseen_pred = clf.predict(unseen_emb.numpy()) if len(unseen_emb) else np.zeros(0)
            scores["unseen"] = (unseen_pred == unseen_y.numpy()).astype(float)
            by_c[c].append(scores)
    best = choose(by_c)
    return {"teacher probe": make_row(by_c[best], {"C": best}, times[best], list(grid.seeds))}


def trained_rows(
    task: AudioTask,
    grid: AudioEcGrid,
    data: str,
    cache: Path,
    runs: Path,
    per_class: int,
    unseen: tuple | None,
    rows: dict[str, dict],
    save: Callable[[], None],
    configs: Path,
    only: list[str] | None = None,
    finished_only: bool = False,
) -> dict[str, dict]:
    """Train every row's grid over the seeds, choose on validation, score test and the unseen set.

    ``rows`` is filled in place and ``save()`` is called after each row (a killed run keeps what it
    measured; a re-run skips finished trials). ``configs`` is the folder of the recipes
    (``configs/east_audio``); ``only`` limits the rows run. ``finished_only`` trains nothing: a row
    is scored only when every trial of its grid has finished in ``runs`` (earlier runs, e.g. with
    ``only``), else left out (the report lists it as not measured), so one regime may hold some rows.
    """
    test = load_splits(data, task).test.tensors
    unseen_x, unseen_y = unseen if unseen is not None else (torch.zeros(0), torch.zeros(0))
    for label, spec in row_specs(grid).items():
        if only and label not in only:
            continue
        extra = run_overrides(spec, task, grid, data, cache, per_class)
        slug = f"{task.name}-{label.replace(' ', '_')}"
        trials = make_trials(configs / spec.recipe, spec.grid, grid.seeds, name=slug, extra_overrides=extra)
        if finished_only and not all_finished(trials, runs):
            print(f"{task.name} {label}: not every trial finished in {runs}; left out", flush=True)
            continue
        chosen = select_best(run_sweep(trials, runs, progress=False), "val_acc")[()]
        scores = []
        for summary in chosen["summaries"]:
            student = load_student(runs / summary["name"] / "student.safetensors")
            scores.append(
                {
                    "val": np.array([summary["val_acc"]]),
                    "test": correct(student, test["x"], test["y"]),
                    "unseen": correct(student, unseen_x, unseen_y),
                }
            )
        times = [float(s["train_time_s"]) for s in chosen["summaries"]]
        rows[label] = make_row(scores, chosen["overrides"], times, chosen["seeds"])
        rows[label]["candidates"] = chosen["candidates"]
        test_acc = 100 * statistics.mean(rows[label]["test_acc"])
        print(f"{task.name} {label}: {rows[label]['chosen']} test {test_acc:.2f}", flush=True)
        save()
    return rows


@dataclass
class AudioPaths:
    """Where the data, the teacher-embedding cache, the runs and the configs are.

    Attributes:
        data: ``kdforge data speech-words`` output (clips + ``manifest.csv`` + ``speech_words.json``).
        unseen: ``kdforge data asterisk-words`` output (real recordings of the 36 words).
        cache: Teacher-embedding cache (one entry per teacher path).
        runs: Run directories (finished trials are skipped on a re-run).
        configs: ``configs/east_audio`` (the recipes the rows build on).
    """

    data: str
    unseen: str
    cache: Path
    runs: Path
    configs: Path


def split_text(data: str, task: AudioTask) -> str:
    """How many classes and groups each split has (the ``seed`` 0 validation draw)."""
    rows = read_manifest(Path(data) / "manifest.csv")
    splits = load_splits(data, task)
    group = task.data_kwargs.get("group_column")
    if group is None:
        voices = {s: len({r["voice"] for r in rows if r["split"] == s}) for s in ("train", "val", "test")}
        return f"voices train/val/test {voices['train']}/{voices['val']}/{voices['test']} (split by voice)"
    names = {s: sorted({Path(f).parent.name for f in splits.files[s]}) for s in ("train", "val", "test")}
    what = "word" if group == "label" else group
    return (
        f"{splits.num_classes} classes; split by {what}: test {what}s {', '.join(names['test'])}; "
        f"{len(names['val'])} validation {what}s (drawn per seed), {len(names['train'])} training {what}s"
    )


def run_benchmark(
    task: AudioTask,
    grid: AudioEcGrid,
    paths: AudioPaths,
    per_class: list[int],
    save: Callable[[dict], None],
    only: list[str] | None = None,
    note: str | None = None,
    finished_only: bool = False,
) -> dict[str, Any]:
    """Every regime of one task: probes, then the trained rows; ``save(results)`` after each row.

    ``only`` and ``finished_only`` are as in :func:`trained_rows` (the latter re-reads finished
    trials and trains nothing: a regime then holds the rows that finished).
    """
    import json

    budget = grid.budget()
    torch.set_num_threads(1)
    cache_embeddings(paths.data, paths.cache)
    unseen = unseen_set(paths.data, paths.unseen) if task.unseen else None
    results: dict[str, Any] = {
        "task": {"name": task.name, "title": task.title, "design": task.design, "unseen": task.unseen},
        "data_kwargs": data_kwargs(task),
        "grid": {k: v for k, v in vars(grid).items()},
        "budget": budget,
        "note": note,
        "data": {
            "speech_words_options": json.loads((Path(paths.data) / "speech_words.json").read_text()),
            "split_text": split_text(paths.data, task),
            "made_by": "kdforge data speech-words --out DATA --asterisk UNSEEN (options above)",
        },
        "regimes": {},
    }
    for pc in per_class:
        splits = load_splits(paths.data, task, per_class=pc)
        block = {
            "n_train": len(splits.train),
            "n_val": len(splits.val),
            "n_test": len(splits.test),
            "n_unseen": 0 if unseen is None else len(unseen[1]),
            "rows": probe_rows(task, grid, paths.data, paths.cache, pc, unseen),
        }
        results["regimes"][str(pc)] = block
        trained_rows(
            task, grid, paths.data, paths.cache, paths.runs / f"pc{pc}", pc, unseen, block["rows"],
            lambda: save(results), paths.configs, only, finished_only,
        )  # fmt: skip
    return results
