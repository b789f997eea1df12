"""Which shipped recipes the recipe check runs, in what role, and which it leaves out and why.

Every run recipe under ``configs/`` (:func:`~kdforge.experiments.recipes_check.checkable_recipes`)
gets a :class:`RecipePlan`, derived from the recipe itself:

- ``distilled``: its method is not ``supervised``; its teacher recipe is the one whose exported
  student (``RUN_DIR/student.safetensors``) is the recipe's ``teacher.checkpoint`` (``None``
  when the teacher is not trained by a recipe, e.g. EAsT's cached embeddings);
- ``teacher``: a ``supervised`` recipe that another recipe reads as its teacher (or whose name
  says it is one);
- ``alone``: any other ``supervised`` recipe (a student trained alone).

Only two things are declared by hand: :data:`COSTLY` (recipes left out unless named, and why)
and :data:`CHECK_OVERRIDES` (overrides the check applies, e.g. where generated data lies).

Example::

    plans = plan_recipes("configs", data_roots={"audio": "/data/speech-words"})
    [p.rel for p in plans if p.role == "distilled" and p.reason is None]
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from kdforge.config import load_recipe
from kdforge.errors import KdforgeError

TEACHER, ALONE, DISTILLED = "teacher", "alone", "distilled"

#: recipes (globs under configs/) left out unless named, and why; the first matching glob counts
COSTLY: dict[str, str] = {
    "opdf/nlp_*.yaml": "cost: MiniLM teacher; one nlp_kd_plain run took 62-134 s, the teacher 750 s "
    "(opdf_nlp.json)",
}
#: dotted overrides the check applies (glob -> overrides); ``{name}`` is filled from ``data_roots``
CHECK_OVERRIDES: dict[str, list[str]] = {
    "east_audio/*.yaml": ["data.data_dir={audio}"],
    "east_audio/words_ec.yaml": ["data.kwargs.cache={audio}-ge2e/encoder"],
}
#: the grids tuned on validation before a recipe is checked (alone grid, distilled grid; seed 0)
TUNING: dict[str, tuple[dict[str, list], dict[str, list]]] = {
    "fmnist_fitnet.yaml": ({"train.lr": [0.002, 0.006]}, {"train.lr": [0.002, 0.006]}),
}


@dataclass
class RecipePlan:
    """One recipe of the check.

    Attributes:
        rel: the recipe's path under ``configs/`` (POSIX).
        role: ``teacher``, ``alone`` or ``distilled``.
        teacher: the recipe (``rel``) that trains its teacher, run first; ``None``: none.
        overrides: dotted overrides applied when it is loaded for the check.
        reason: why it is not run unless named (:data:`COSTLY`); ``None``: run by default.
    """

    rel: str
    role: str
    teacher: str | None = None
    overrides: list[str] = field(default_factory=list)
    reason: str | None = None


def check_overrides(rel: str, data_roots: dict[str, str] | None = None) -> list[str]:
    """The overrides :data:`CHECK_OVERRIDES` gives ``rel``, with ``{name}`` filled from ``data_roots``.

    Raises:
        KdforgeError: an override needs a data root that was not given.
    """
    roots = data_roots or {}
    out = []
    for pattern, overrides in CHECK_OVERRIDES.items():
        if not fnmatch.fnmatch(rel, pattern):
            continue
        for override in overrides:
            try:
                out.append(override.format(**roots))
            except KeyError as e:
                raise KdforgeError(
                    f"recipe '{rel}' needs the data root {e} for the check",
                    f"give it, e.g. --{e.args[0]}-data DIR",
                ) from None
    return out


def _reason(rel: str) -> str | None:
    return next((why for pattern, why in COSTLY.items() if fnmatch.fnmatch(rel, pattern)), None)


def _export(run_dir: Path) -> Path:
    return (Path(run_dir) / "student.safetensors").resolve()


def plan_recipes(
    configs_dir: str | Path, recipes: list[str], data_roots: dict[str, str] | None = None
) -> list[RecipePlan]:
    """A :class:`RecipePlan` for each of ``recipes`` (paths under ``configs_dir``), in that order.

    Raises:
        KdforgeError: a recipe needs a data root that was not given.
    """
    root = Path(configs_dir)
    configs = {rel: load_recipe(root / rel, check_overrides(rel, data_roots)) for rel in recipes}
    exports = {_export(cfg.run_dir): rel for rel, cfg in configs.items() if cfg.method.name == "supervised"}
    read = {
        exports.get(Path(cfg.teacher.checkpoint).resolve())
        for cfg in configs.values()
        if cfg.teacher is not None and cfg.teacher.checkpoint
    }
    plans = []
    for rel, cfg in configs.items():
        plan = RecipePlan(rel, ALONE, overrides=check_overrides(rel, data_roots), reason=_reason(rel))
        if cfg.method.name != "supervised":
            plan.role = DISTILLED
            checkpoint = cfg.teacher.checkpoint if cfg.teacher is not None else None
            plan.teacher = exports.get(Path(checkpoint).resolve()) if checkpoint else None
        elif rel in read or "teacher" in Path(rel).stem:
            plan.role = TEACHER
        plans.append(plan)
    return plans
