"""A tiny DVC project in tmp_path with a folder of class folders: the user's own data.

``git init`` + ``dvc init`` and the project's params.yaml; the folder is drawn with
Pillow and holds, besides good images, a text file named .jpg, a truncated JPEG and
one dog filed under cats too (a label conflict).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convbench.settings import Settings, load_settings
from tests.conftest import ROOT, drawn_image, encoded

FOLDER = "data/external/pets"
GOOD = 6  # good images per class


def dvc_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC repository holding the project's params.yaml; DVC's caches in it."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc_site"))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    return root


def truncated_jpeg() -> bytes:
    good = encoded(drawn_image(1, 99))
    return good[: len(good) // 2]


def pets_folder(root: Path, name: str = FOLDER, good: int = GOOD) -> Path:
    """cats/ and dogs/ of ``good`` 48x40 JPEGs each, two bad files and a label conflict."""
    folder = root / name
    for label, cls in enumerate(("cats", "dogs")):
        (folder / cls).mkdir(parents=True)
        for i in range(good):
            (folder / cls / f"{cls[:-1]}.{i}.jpg").write_bytes(encoded(drawn_image(label, i)))
    (folder / "cats" / "notes.jpg").write_text("not a picture, only a note\n")
    (folder / "dogs" / "truncated.jpg").write_bytes(truncated_jpeg())
    (folder / "cats" / "dup.jpg").write_bytes((folder / "dogs" / "dog.0.jpg").read_bytes())
    (folder / "cats" / ".DS_Store").write_bytes(b"\x00\x01hidden")  # skipped, not data
    return folder


def project_settings(root: Path, tmp_path: Path) -> Settings:
    return load_settings(
        root / "params.yaml", environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    )
