"""Train the two image teachers of the EAsT/EC image table once, then cache their embeddings.

Teachers (both a ``cnn`` with channels 16-32, a 128-d ``fc`` embedding, inputs resized to 28x28):

- ``ae_fmnist``: *unsupervised*: the encoder of a convolutional autoencoder trained on the 60k
  Fashion-MNIST training images without labels (students that use it learn 8x8 digits: another
  image set).
- ``coarse_fmnist``: *supervised on another task*: a classifier of the 5 Fashion-MNIST super-classes
  (tops / trousers / dresses / footwear / bags) on the 60k training images; students learn the 10
  fine classes (only a few labelled) or digits.

Everything is seeded and offline (Fashion-MNIST from the Debian package, digits from scikit-learn).
Outputs: ``$KDFORGE_CACHE/teachers/<name>.{safetensors,json}`` and the embedding caches
``$KDFORGE_CACHE/embeddings/<dataset>/all/<name>`` (the same as
``kdforge embed extract --dataset D --model cnn --checkpoint T.safetensors --path fc --name NAME``).

Usage: ``python benchmarks/east_image_teachers.py`` (about 5 minutes on one CPU core).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kdforge.data import load_dataset
from kdforge.data.embeddings_cli import extract as extract_cmd
from kdforge.io import cache_root
from kdforge.models import build_model
from kdforge.models.image_teachers import coarse_labels, save_exported, train_autoencoder, train_classifier

TEACHER_KWARGS = {"channels": [16, 32], "fc": 128, "global_pool": False, "resize": 28}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs-ae", type=int, default=3)
    p.add_argument("--epochs-cls", type=int, default=2)
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    root = cache_root() / "teachers"
    fm = load_dataset("fashion_mnist", seed=0)
    images = torch.cat([fm.train.tensors["x"], fm.val.tensors["x"]])  # all 60k training images
    labels = torch.cat([fm.train.tensors["y"], fm.val.tensors["y"]])
    log = {}
    for name, num_classes in (("ae_fmnist", 1), ("coarse_fmnist", 5)):
        path = root / name
        if path.with_suffix(".safetensors").is_file():
            print(f"{name}: exists, reused")
            continue
        torch.manual_seed(args.seed)
        net = build_model("cnn", (1, 28, 28), num_classes, **TEACHER_KWARGS)
        t0 = time.perf_counter()
        if name == "ae_fmnist":  # no labels; the 1-way head is never trained or used
            hist = train_autoencoder(net, images, epochs=args.epochs_ae, seed=args.seed)
        else:
            hist = train_classifier(
                net, images, coarse_labels(labels), epochs=args.epochs_cls, seed=args.seed
            )
            with torch.no_grad():
                acc = (net(fm.test.tensors["x"]).argmax(-1) == coarse_labels(fm.test.tensors["y"])).float()
            print(f"coarse_fmnist: super-class test accuracy {acc.mean():.4f}")
            hist.append({"superclass_test_acc": acc.mean().item()})
        save_exported(net, path, "cnn", TEACHER_KWARGS, (1, 28, 28), num_classes)
        log[name] = {"history": hist, "train_time_s": time.perf_counter() - t0}
        (root / f"{name}.log.json").write_text(json.dumps(log[name], indent=1))
    for name in ("ae_fmnist", "coarse_fmnist"):
        for ds in args.datasets:
            extract_cmd(
                dataset=ds, model="cnn", split="all", checkpoint=str(root / f"{name}.safetensors"),
                path="fc", cache=None, name=name, batch_size=500, data_dir=None,
            )  # fmt: skip


if __name__ == "__main__":
    main()
