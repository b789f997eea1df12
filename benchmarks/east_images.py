"""EAsT / EC on images: baseline vs EAsT vs EC (FitNet, dCor, several d), low-label students, + unseen set.

Teacher/data pairs (teachers trained once by ``benchmarks/east_image_teachers.py``, embeddings cached):
``digits_ae`` (autoencoder teacher -> digits), ``digits_coarse`` (FMNIST super-class teacher -> digits),
``fmnist_coarse`` (the same teacher -> FMNIST 10 classes); see :mod:`kdforge.experiments.east_image_pairs`.

Protocol (:mod:`kdforge.experiments.east_protocol`): the baseline; lambda chosen on validation per
variant from ``--lams`` (EC at ``--d-select``); EC at every d of ``--ds``; checkpoints selected on
validation. Each exported student is also scored, with no further training, on the test split rotated
(±20°), translated (±10%) and noised (σ 0.15) by :func:`kdforge.data.vision.shifted_images`.

Usage: ``python benchmarks/east_images.py --pairs digits_ae digits_coarse fmnist_coarse``
-> ``benchmarks/results/east_images.{json,md,png}``; ``--probe`` / ``--regime``: linear probes on the
teacher embeddings / baseline validation accuracy vs label count; ``--render``: markdown from the JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.experiments import east_image_pairs as images
from kdforge.experiments import east_protocol as east
from kdforge.experiments.east_grid import EastGrid
from kdforge.experiments.east_image_pairs import probe_markdown, regime_markdown
from kdforge.report.results import rerender_results, save_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"


def markdown(res: dict) -> str:
    """The pairs' tables (their headings read the label counts from this checkout's recipes)."""
    return images.pairs_markdown(res, CONFIGS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=list(images.PAIRS), choices=list(images.PAIRS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ds", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--d-select", type=int, default=16, help="EC's d while lambda is chosen")
    p.add_argument("--lams", type=float, nargs="+", default=[0.3, 0.7])
    p.add_argument("--output-dir", default="runs/east_images")
    p.add_argument("--out", default=str(RESULTS / "east_images.json"))
    p.add_argument("--set", nargs="*", default=[], help="overrides for every run, e.g. data.subset=75")
    p.add_argument("--set-teacher", nargs="*", default=[], help="overrides for the EAsT/EC runs only")
    p.add_argument("--probe", action="store_true", help="only linear probes on the teacher embeddings")
    p.add_argument("--regime", action="store_true", help="only the label-count check of the baselines")
    p.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = p.parse_args()
    mode = "regime" if args.regime else "probe" if args.probe else "table"
    render = {"regime": regime_markdown, "probe": probe_markdown, "table": markdown}[mode]
    out = Path(args.out).with_name("east_images_regime.json") if args.regime else Path(args.out)
    if args.render:
        print(rerender_results(out, render))
        return
    torch.set_num_threads(1)  # small models on a shared CPU
    if mode == "regime":
        res = images.label_regime(args.seeds, CONFIGS, args.output_dir)
    elif mode == "probe":
        res = images.teacher_probe(args.pairs, args.seeds, args.set, CONFIGS)
    else:
        grid = EastGrid(args.seeds, args.ds, args.d_select, args.lams, None, args.set, args.set_teacher)
        res = images.run_pairs(args.pairs, grid, CONFIGS, args.output_dir)
    print(save_results(out, res, render, vars(args), args.seeds))
    if mode == "table":
        east.plot_pairs(images.pair_tables(res, args.ds, args.seeds), args.ds, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
