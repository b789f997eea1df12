"""Pairs per hour: the KT pair pipeline vs a straightforward one-pair-at-a-time loop, side by side.

Rows (all in one run, same machine, same threads, same test images for the stored accuracies):
  1. reference loop + reference schedule (10+10 epochs, full train split, SGD lr 0.01 m 0.9, batch
     128): timed for ``--ref-steps`` steps per phase and extrapolated to the full step count;
  2. reference loop + the fast schedule of our pair sets: one whole pair, measured;
  3. vmap engine (``torch.func.vmap`` over K networks, cached begin activations, folded last BN) +
     fast schedule: one group of ``--k-vmap`` pairs, measured;
  4. grouped engine (K networks as one grouped-conv network, same caches) + fast schedule: one group
     of ``--k`` pairs, measured.
The protocol is :mod:`kdforge.experiments.kt_pair_speed`; ``--render`` re-renders the markdown from
the JSON only. Writes benchmarks/results/kt_pairs.{json,md}.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import torch

from kdforge.data import load_dataset
from kdforge.experiments.kt_pair_speed import FAST, SEEDS, measure_pair_speed, pair_speed_markdown
from kdforge.methods.translation import networks
from kdforge.methods.translation.pairs import Schedule
from kdforge.report.results import rerender_results, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--k", type=int, default=8, help="pairs trained at once by the grouped engine")
    ap.add_argument("--k-vmap", type=int, default=4, help="pairs trained at once by the vmap engine")
    ap.add_argument("--eval-images", type=int, default=2000, help="test images scored per pair")
    ap.add_argument("--no-skip", action="store_true", help="small block without the identity skip")
    ap.add_argument("--ref-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_pairs.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    a = ap.parse_args()
    if a.render:
        return print(rerender_results(a.out, pair_speed_markdown))
    torch.set_num_threads(a.threads)
    sp = load_dataset(a.dataset)
    test = {k: v[: a.eval_images] for k, v in sp.test.tensors.items()}
    shape = {"in_channels": sp.input_shape[0], "image_size": sp.input_shape[1]}  # fashion_mnist: 1, 28
    spec = networks.BlockSpec(small_skip=not a.no_skip, **shape)
    rows = measure_pair_speed(a.dataset, spec, sp.train.tensors, test, a.k, a.k_vmap, a.ref_steps)
    cfg = {k: getattr(a, k) for k in ("dataset", "k", "k_vmap", "eval_images")}
    cfg |= {"spec": spec.to_dict(), "ref_steps": a.ref_steps, "threads": a.threads}
    cfg |= {"fast_schedule": asdict(FAST), "reference_schedule": asdict(Schedule.reference())}
    print(save_results(a.out, {"rows": rows}, pair_speed_markdown, cfg, SEEDS))


if __name__ == "__main__":
    main()
