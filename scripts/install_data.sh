#!/usr/bin/env bash
# Install the default data set (Fashion-MNIST, Debian package dataset-fashion-mnist).
# Files land in /usr/share/datasets/fashion-mnist/. Needs apt-get and root; otherwise
# says how to get the data another way. --quiet: only speak on failure.
set -u
dir=/usr/share/datasets/fashion-mnist
quiet=${1:-}
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  [ "$quiet" = "--quiet" ] || echo "Fashion-MNIST already installed in $dir"
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Fashion-MNIST (apt-get install dataset-fashion-mnist) ..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    && echo "Fashion-MNIST installed in $dir" && exit 0
  echo "error: apt-get could not install dataset-fashion-mnist" >&2
else
  echo "error: Fashion-MNIST is not installed and this shell cannot apt-get install it (needs root and apt)." >&2
fi
echo "  fix: run 'sudo apt-get install dataset-fashion-mnist', or download the four Fashion-MNIST IDX files" >&2
echo "       into a directory and pass --data-dir DIR (any MNIST-format directory works)." >&2
exit 1
