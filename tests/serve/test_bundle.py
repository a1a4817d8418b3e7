"""Bundles: export from a run, verified load, and no training code on the serving side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foundrec.errors import FoundrecError
from foundrec.models.base import Recommender
from foundrec.serve.bundle import export_bundle, load_bundle


def test_bundle_holds_what_serving_needs(bundle_dir: Path, run_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert bundle.version == manifest["version"] and manifest["model"] == "sasrec"
    assert {"model/model.json", "vocab/items.txt", "item_vectors.npy", "popularity.npy"} <= set(
        manifest["files"]
    )
    model = Recommender.load(run_dir / "model")
    assert np.allclose(bundle.item_vectors, model.item_vectors().numpy())
    assert bundle.item_vectors.dtype == np.float32
    assert bundle.popularity.sum() == len(bundle.history_items) and len(bundle.popularity) == len(
        bundle.items
    )


def test_damaged_or_missing_files_are_named(bundle_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(bundle_dir, tmp_path / "copy"))
    (copy / "vocab" / "items.txt").write_text("edited\n")
    with pytest.raises(FoundrecError, match="vocab/items.txt"):
        load_bundle(copy)
    (copy / "item_vectors.npy").unlink()
    with pytest.raises(FoundrecError, match="missing"):
        load_bundle(copy)
    with pytest.raises(FoundrecError, match="not a bundle"):
        load_bundle(tmp_path)


def test_export_refuses_a_foreign_folder(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FoundrecError, match="not empty"):
        export_bundle(run_dir, tmp_path)
    with pytest.raises(FoundrecError, match="not a run folder"):
        export_bundle(tmp_path, tmp_path / "b")


def test_serving_imports_no_training_code() -> None:
    code = (
        "import sys, foundrec.serve.app, foundrec.cli;"
        "bad = [m for m in sys.modules if m.startswith(('foundrec.train', 'foundrec.experiment'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
