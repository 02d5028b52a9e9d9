"""A local folder as a dataset: verified against its ``.dvc`` file and pin, copied by the
download stage, scanned like an archive; the same image under two classes is a label
conflict, quarantined and reported with both file names."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from convbench.data.archives import UnsafeArchiveError, iter_files
from convbench.data.local_folder import FolderChangedError, FolderUnavailableError, copy_folder
from convbench.data.scan import MissingClassError
from convbench.data.shards import read_ids_and_labels
from convbench.data.validation.failure import DataValidationError
from convbench.ops.dataset_add import add_dataset
from convbench.settings import FileChecks, Settings
from convbench.stages.download import download_dataset
from convbench.stages.prepare import prepare_dataset
from convbench.stages.validate import validate_dataset
from tests.conftest import with_dataset
from tests.data.local_project import FOLDER, dvc_project, pets_folder, project_settings


@pytest.fixture
def pets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Settings]:
    """The project with data/external/pets added (`dvc add`, pinned in params.yaml)."""
    root = dvc_project(tmp_path, monkeypatch)
    pets_folder(root)
    add_dataset(root / "params.yaml", "pets", str(root / FOLDER))
    return root, project_settings(root, tmp_path)


def relaxed(settings: Settings, **checks: object) -> Settings:
    """Tiny data: a quarter of bad files and one conflict are tolerated, unless overridden."""
    limits = {"max_bad_fraction": 0.3, "max_label_conflicts": 1, **checks}
    return with_dataset(settings, "pets", checks=FileChecks(**limits))


def test_the_folder_is_copied_validated_and_prepared(pets, tmp_path: Path) -> None:
    root, settings = pets
    settings = relaxed(settings)
    raw = root / "data" / "raw" / "pets"
    copied = download_dataset(settings, "pets", raw)
    assert len(copied) == 15  # 12 good, 2 bad, the duplicate; not the hidden file
    assert (raw / "cats" / "dup.jpg").read_bytes() == (raw / "dogs" / "dog.0.jpg").read_bytes()
    assert not (raw / "cats" / ".DS_Store").exists()

    validated, report = tmp_path / "validated", tmp_path / "report"
    summary = validate_dataset(settings, "pets", raw, validated, report)
    assert summary["success"]
    reasons = {q["file"]: q["reason"] for q in summary["quarantined"]}
    assert set(reasons) == {
        "cats/notes.jpg",
        "dogs/truncated.jpg",
        "cats/dup.jpg",
        "dogs/dog.0.jpg",
    }
    assert reasons["cats/notes.jpg"].startswith("not an image")
    assert reasons["dogs/truncated.jpg"].startswith("truncated")
    # Each conflicting file is quarantined with a reason naming the other one.
    assert "dogs/dog.0.jpg (dogs)" in reasons["cats/dup.jpg"]
    assert "cats/dup.jpg (cats)" in reasons["dogs/dog.0.jpg"]
    assert summary["label_conflicts"] == [
        [{"file": "cats/dup.jpg", "class": "cats"}, {"file": "dogs/dog.0.jpg", "class": "dogs"}]
    ]
    assert summary["files"]["label_conflicts"] == 1
    saved = json.loads((report / "summary.json").read_text())
    assert saved["label_conflicts"] == summary["label_conflicts"]
    conflict_check = next(e for e in saved["expectations"] if "label_conflict" in e["columns"])
    assert conflict_check["success"] and conflict_check["observed_value"] == 1
    for name in ("cats/dup.jpg", "dogs/dog.0.jpg"):  # kept, byte for byte, not converted
        assert (validated / "quarantine" / name).read_bytes() == (raw / name).read_bytes()
    listed = pd.read_csv(validated / "quarantine.csv")
    assert set(listed["file"]) == set(reasons)
    page = (report / summary["data_docs_validation"]).read_text()
    assert "cats/dup.jpg" in page and "dogs/dog.0.jpg" in page

    prepared = tmp_path / "prepared"
    info = prepare_dataset(settings, "pets", raw, validated, report / "summary.json", prepared)
    counts = {role: split["count"] for role, split in info["splits"].items()}
    assert sum(counts.values()) == 11 and counts["test"] >= 2 and counts["validation"] >= 2
    ids, _ = read_ids_and_labels(
        [prepared / shard["file"] for split in info["splits"].values() for shard in split["shards"]]
    )
    assert not set(ids) & set(reasons)


def test_label_conflicts_over_the_threshold_fail_naming_both_files(pets, tmp_path: Path) -> None:
    root, settings = pets
    settings = relaxed(settings, max_label_conflicts=0)
    raw = root / "data" / "raw" / "pets"
    download_dataset(settings, "pets", raw)
    with pytest.raises(DataValidationError, match=r"unique_value_count.*label_conflict"):
        validate_dataset(settings, "pets", raw, tmp_path / "validated", tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert not summary["success"]
    assert {f["file"] for group in summary["label_conflicts"] for f in group} == {
        "cats/dup.jpg",
        "dogs/dog.0.jpg",
    }


def test_a_folder_changed_since_dvc_add_is_refused(pets, tmp_path: Path) -> None:
    root, settings = pets
    (root / FOLDER / "dogs" / "dog.1.jpg").write_bytes(b"edited after dvc add")
    with pytest.raises(FolderChangedError, match="changed since `dvc add`") as refused:
        download_dataset(settings, "pets", tmp_path / "raw")
    assert f"dvc add {FOLDER}" in str(refused.value)
    assert not (tmp_path / "raw").exists()


def test_a_pin_other_than_the_dvc_file_shows_both(pets, tmp_path: Path) -> None:
    _, settings = pets
    recorded = settings.dataset("pets").source.md5
    assert recorded is not None
    source = settings.dataset("pets").source.model_copy(update={"md5": "0" * 32 + ".dir"})
    with pytest.raises(FolderChangedError) as refused:
        download_dataset(with_dataset(settings, "pets", source=source), "pets", tmp_path / "raw")
    message = str(refused.value)
    assert "0" * 32 + ".dir" in message and recorded in message
    assert "convbench dataset add pets" in message


def test_a_folder_without_its_dvc_file_is_unavailable(pets, tmp_path: Path) -> None:
    root, settings = pets
    (root / f"{FOLDER}.dvc").unlink()
    with pytest.raises(FolderUnavailableError, match=r"pets\.dvc not found"):
        download_dataset(settings, "pets", tmp_path / "raw")


def test_a_missing_class_folder_is_named(pets, tmp_path: Path) -> None:
    root, settings = pets
    raw = root / "data" / "raw" / "pets"
    download_dataset(settings, "pets", raw)
    settings = with_dataset(relaxed(settings), "pets", classes=["birds", "cats", "dogs"])
    with pytest.raises(MissingClassError, match=r"datasets\.pets: no files in .*pets/birds"):
        validate_dataset(settings, "pets", raw, tmp_path / "validated", tmp_path / "report")


def test_a_folder_is_read_like_an_archive_links_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.jpg").write_bytes(b"a")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_bytes(b"hidden folders are no data")
    assert [(m.name, data) for m, data in iter_files(folder)] == [("cats/a.jpg", b"a")]
    (folder / "cats" / "b.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(UnsafeArchiveError, match=r"'cats/b.jpg' refused: link"):
        copy_folder(folder, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
