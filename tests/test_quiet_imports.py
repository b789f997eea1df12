"""Loading the offline MiniLM teacher prints nothing (its package prints a banner when imported)."""

from __future__ import annotations

import sys
from pathlib import Path

from kdforge.models import hf


class _FakeZip:
    """Stands in for the packaged 83 MB model.zip: extracting writes the three required files."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def extractall(self, target):
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in hf._REQUIRED:
            Path(target, name).write_text("{}")


def test_minilm_dir_prints_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.delitem(sys.modules, "all_minilm_l6_v2", raising=False)
    monkeypatch.setattr(hf.zipfile, "ZipFile", _FakeZip)
    target = hf.minilm_dir(tmp_path / "minilm")
    assert all((target / name).is_file() for name in hf._REQUIRED)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "all_minilm_l6_v2" not in sys.modules  # located on disk, never imported
