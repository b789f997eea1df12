"""Provenance for every number kdforge reports: command, config, seeds, versions, machine, date."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("torch", "numpy", "accelerate", "safetensors", "transformers", "tensorly", "scikit-learn")


def versions() -> dict[str, str]:
    """Installed versions of kdforge's main dependencies (and Python)."""
    out = {"python": platform.python_version()}
    for name in ("kdforge", *_PACKAGES):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def machine() -> dict[str, Any]:
    """CPU/GPU description of this machine."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - torch always present in practice
        pass
    return info


def git_commit() -> str | None:
    """Current git commit of the working tree, if any (with '-dirty' when modified)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(config: Any = None, seeds: list[int] | None = None, command: str | None = None) -> dict:
    """A provenance record to embed in a results file."""
    return {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config,
        "seeds": seeds,
        "versions": versions(),
        "machine": machine(),
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(path: str | Path, results: dict, markdown: str | None = None) -> Path:
    """Write ``results`` (which should contain a ``provenance`` key) as JSON, plus optional markdown.

    The markdown file (same stem, ``.md``) gets a provenance footer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    if markdown is not None:
        prov = results.get("provenance", {})
        foot = (
            f"\n\n<sub>command: `{prov.get('command')}` · seeds: {prov.get('seeds')} · "
            f"date: {prov.get('date')} · commit: {prov.get('git_commit')} · machine: "
            f"{prov.get('machine', {}).get('processor')} x{prov.get('machine', {}).get('cpu_count')} · "
            f"torch {prov.get('versions', {}).get('torch')}</sub>\n"
        )
        path.with_suffix(".md").write_text(markdown.rstrip() + foot)
    return path
