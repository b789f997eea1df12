"""Which training pair's small block is the KT template: chosen on validation or on test images.

The functional KT rows translate a correction of a fixed *template*: the small block of the training
pair that scores best on validation images (:func:`~kdforge.methods.translation.train.template_index`).
Earlier benchmark code took the pair with the best stored accuracy instead, and a pair set stores
accuracies on *test* images. This protocol rebuilds a pair set's training and test networks from
their seeds and scores the template chosen either way on the same test networks (plain, and with
every test network's channels aligned to the template network's order first), so the two choices
differ in nothing else.
"""

from __future__ import annotations

import statistics as st

from kdforge.methods.translation.align import align_channels
from kdforge.methods.translation.grouped import small_accuracy
from kdforge.methods.translation.pairs import (
    PairConfig,
    load_pair_data,
    pair_test_images,
    regenerate_networks,
)
from kdforge.methods.translation.train import validation_images

#: the two ways of choosing the template pair
BY_VALIDATION = "validation images (now)"
BY_TEST = "stored accuracy = test images (before)"


def measure_template_choice(cfg: PairConfig, train: list[int], test: list[int], splits=None) -> dict:
    """Score the template chosen on validation and on test images on the rebuilt test networks.

    Args:
        cfg: The pair set's configuration (its manifest).
        train: Positions of the training networks (the template candidates).
        test: Positions of the test networks.

    Returns:
        Per choice: the template's position, its accuracy on the validation and (stored) test
        images, and per test network the template's accuracy, plain and channel-aligned.
    """
    splits = splits or load_pair_data(cfg.dataset)
    train_nets, test_nets = regenerate_networks(cfg, train, splits), regenerate_networks(cfg, test, splits)
    skip, images = cfg.spec.small_skip, pair_test_images(splits, cfg)
    own_blocks = {k: v for k, v in train_nets.items() if k.startswith("small.")}
    val_acc = small_accuracy(train_nets, own_blocks, *validation_images(splits), skip)
    out: dict = {"train": train, "test": test, "choices": {}}
    for name, j in ((BY_VALIDATION, int(val_acc.argmax())), (BY_TEST, int(train_nets["acc_small"].argmax()))):
        block = {k: v[j : j + 1].expand(len(test), *v.shape[1:]) for k, v in own_blocks.items()}
        aligned = align_channels(test_nets, {k: v[j : j + 1] for k, v in train_nets.items()})
        out["choices"][name] = {
            "position": train[j],
            "val_acc": float(val_acc[j]),
            "test_acc": float(train_nets["acc_small"][j]),
            "template": small_accuracy(test_nets, block, images["x"], images["y"], skip).tolist(),
            "template_aligned": small_accuracy(aligned, block, images["x"], images["y"], skip).tolist(),
        }
    return out


def template_markdown(results: dict) -> str:
    """The markdown of a template-choice results file (from its JSON alone)."""
    c = results["provenance"]["config"]
    md = [
        "# KT template: chosen on validation images vs on the stored (test-image) accuracy",
        "",
        f"Pair set `{c['pairs']}` rebuilt from its seeds: {len(results['train'])} training networks "
        f"(the template candidates) and {len(results['test'])} test networks. The template is the small "
        "block of one training pair; it is scored inside every test network's own frozen begin/last "
        f"blocks on the first {c['manifest']['eval_images']} test images, plain and after aligning each "
        "test network's channels to the template network's order.",
        "",
        "| chosen by | template network | its val acc | its test acc | template only "
        "| template only, aligned |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["choices"].items():
        md.append(
            f"| {name} | {r['position']} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | "
            f"{st.mean(r['template']):.3f} ± {st.stdev(r['template']):.3f} | "
            f"{st.mean(r['template_aligned']):.3f} ± {st.stdev(r['template_aligned']):.3f} |"
        )
    return "\n".join(md)
