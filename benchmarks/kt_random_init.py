"""Why is a random-init small block so strong in the reference KT setting? Measured, not guessed.

Large networks (begin + basic block + last; PyTorch-default init) are trained with (a) a longer,
reference-like schedule (SGD lr 0.01, momentum 0.9, batch 128 over the whole train split) and
(b) the fast schedule of our pair sets. For each trained network the small block is then scored
between its frozen begin/last blocks (eval-mode BN) on the full test split:

* random init (PyTorch default, several draws), with the reference's identity skip;
* all-zero weights with the skip: the block is then *exactly* the identity (``relu(h) = h``);
* random init without the skip (``BlockSpec(small_skip=False)``).

If random ~ identity, the strength of the random baseline is structural: the skip passes the begin
features through, and the frozen last block already classifies from features that a trained
residual block changed only a little. The protocol is :mod:`kdforge.experiments.kt_random_init`;
``--render`` re-renders the markdown from the JSON only.
Writes benchmarks/results/kt_random_init.{json,md}.
"""

from __future__ import annotations

import argparse

import torch

from kdforge.data import load_dataset
from kdforge.experiments.kt_random_init import measure_random_init, random_init_markdown
from kdforge.methods.translation import networks
from kdforge.report.results import rerender_results, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--k", type=int, default=2, help="networks per schedule")
    ap.add_argument("--ref-epochs", type=int, default=10, help="epochs of the reference-like schedule")
    ap.add_argument("--draws", type=int, default=3, help="random small blocks per network")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_random_init.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    a = ap.parse_args()
    if a.render:
        return print(rerender_results(a.out, random_init_markdown))
    torch.set_num_threads(a.threads)
    sp = load_dataset(a.dataset)
    spec = networks.BlockSpec(in_channels=sp.input_shape[0], image_size=sp.input_shape[1])
    rows = measure_random_init(a.dataset, spec, sp.train.tensors, sp.test.tensors, a.k, a.ref_epochs, a.draws)
    cfg = {
        "dataset": a.dataset,
        "k": a.k,
        "ref_epochs": a.ref_epochs,
        "draws": a.draws,
        "spec": spec.to_dict(),
    }
    print(save_results(a.out, {"rows": rows}, random_init_markdown, cfg, [r["seeds"] for r in rows]))


if __name__ == "__main__":
    main()
