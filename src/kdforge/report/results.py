"""Results files of benchmarks: written with provenance, re-rendered from their JSON.

A benchmark keeps its numbers in ``<name>.json`` and renders ``<name>.md`` from that JSON
alone, so a table can be re-rendered (after a formatting change, or to prove a rewritten
script reproduces it) without re-running anything: :func:`rerender_results`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.errors import KdforgeError
from kdforge.report.provenance import provenance, write_results


def save_results(
    path: str | Path,
    results: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    config: Any = None,
    seeds: list[int] | None = None,
) -> str:
    """Add provenance (command, config, seeds, versions, machine, commit, date) and write JSON + markdown.

    Returns:
        The rendered markdown (without the provenance footer), e.g. to print.
    """
    results = dict(results, provenance=provenance(config, seeds))
    text = markdown(results)
    write_results(path, results, text)
    return text


def rerender_results(path: str | Path, markdown: Callable[[dict[str, Any]], str]) -> str:
    """Re-write ``<path>.md`` from the committed ``<path>.json`` (its numbers and provenance unchanged).

    Raises:
        KdforgeError: when the JSON file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise KdforgeError(
            f"results file '{path}' does not exist", "run the benchmark first (without --render)"
        )
    results = json.loads(path.read_text())
    text = markdown(results)
    write_results(path, results, text)
    return text
