"""`convbench dataset add`: the data surveyed, the entry and its runs written into
params.yaml with its comments and layout kept, bad requests refused naming the folder."""

from __future__ import annotations

import difflib
import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from convbench.cli import app
from convbench.data.local_folder import dvc_file_of, recorded_md5
from convbench.models.variants import VARIANTS
from convbench.ops.dataset_add import DatasetAddError, add_dataset
from convbench.ops.dataset_survey import SurveyError, survey_folder
from convbench.settings import load_settings
from convbench.stages.entry import known_names
from tests.data.local_project import FOLDER, dvc_project, pets_folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = dvc_project(tmp_path, monkeypatch)
    monkeypatch.chdir(root)
    return root


def only_additions(before: str, after: str) -> bool:
    """Every line of ``before`` is still there, in order, unchanged."""
    opcodes = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines()).get_opcodes()
    return all(tag in ("equal", "insert") for tag, *_ in opcodes)


def grey_digits(folder: Path, splits: dict[str, int]) -> None:
    """split/<class>/<n>.png: 28x28 grey PNGs, a bar whose place is the class."""
    for split, count in splits.items():
        for label, cls in enumerate(("zero", "one")):
            (folder / split / cls).mkdir(parents=True)
            for i in range(count):
                pixels = np.full((28, 28), 20 + i, dtype=np.uint8)
                pixels[4:24, 6 + 12 * label : 10 + 12 * label] = 255
                Image.fromarray(pixels, "L").save(folder / split / cls / f"{i}.png")


def test_a_folder_of_photos_is_added_with_its_runs(project: Path) -> None:
    before = (project / "params.yaml").read_text()
    pets_folder(project)
    result = CliRunner().invoke(
        app, ["dataset", "add", "pets", FOLDER, "--base", "vgg16_imagenet"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "all: cats 8, dogs 7" in result.output  # the bad files count: validation sorts them
    assert "make run DATASET=pets" in result.output
    assert "flows.experiment --dataset pets" in result.output
    after = (project / "params.yaml").read_text()
    assert only_additions(before, after)  # comments, layout, every other entry: as they were
    assert "# convbench: every knob" in after and "pets: # `convbench dataset add`" in after

    params = yaml.safe_load(after)
    entry = params["datasets"]["pets"]
    assert entry["source"] == {
        "description": f"{FOLDER}, tracked with `dvc add`",
        "path": FOLDER,
        "md5": recorded_md5(dvc_file_of(project / FOLDER)),
    }
    assert entry["format"] == "image_folders"
    assert entry["folders"] == {"root": "", "split_folders": False}
    assert entry["classes"] == ["cats", "dogs"]
    assert entry["image"] == {"height": 40, "width": 48, "channels": 3}  # median, under 150
    assert entry["train_split"] == "all" and entry["test_split"] is None
    assert entry["validation_fraction"] == entry["test_fraction"] >= 0.1
    assert entry["checks"]["max_label_conflicts"] == 0 and entry["checks"]["min_side"] == 32
    run = params["runs"]["pets-small_cnn"]
    assert run == {**params["runs"]["cats_and_dogs-small_cnn"], "dataset": "pets"}
    assert params["transfer"]["pets-vgg16"]["base"] == "vgg16_imagenet"
    assert [key for key in params["runs"] if key.startswith("pets-")] == ["pets-small_cnn"]
    settings = load_settings(project / "params.yaml", known=known_names(VARIANTS))
    assert "pets-vgg16_finetune" in settings.run_specs()


def test_small_grey_images_in_split_folders_get_the_mnist_runs(project: Path) -> None:
    grey_digits(project / "data" / "external" / "digits", {"train": 12, "test": 4})
    added = add_dataset(project / "params.yaml", "digits", "data/external/digits")
    assert added.survey is not None and added.survey.grey
    assert added.survey.counts == {"test": {"one": 4, "zero": 4}, "train": {"one": 12, "zero": 12}}
    entry = yaml.safe_load((project / "params.yaml").read_text())["datasets"]["digits"]
    assert entry["classes"] == ["one", "zero"]  # sorted, as flow_from_directory labels them
    assert entry["folders"] == {"root": "", "split_folders": True}
    assert entry["image"] == {"height": 28, "width": 28, "channels": 3}  # kept small
    assert entry["checks"]["min_side"] == 28  # their own size is no reason to quarantine
    assert entry["train_split"] == "train" and entry["test_split"] == "test"
    assert entry["validation_fraction"] >= 0.1 and "test_fraction" not in entry
    # The forest reads arrays: a folder dataset is stored as shards, so it gets none.
    assert sorted(added.runs) == ["digits-cnn", "digits-lenet5", "digits-mlp"]


def test_an_npz_file_is_pinned_by_its_sha256(project: Path, tmp_path: Path) -> None:
    file = tmp_path / "shapes.npz"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (20, 16, 16), dtype=np.uint8)
    np.savez(file, x_train=x, y_train=np.arange(20) % 3, x_test=x[:6], y_test=np.arange(6) % 3)
    added = add_dataset(project / "params.yaml", "shapes", str(file))
    entry = yaml.safe_load((project / "params.yaml").read_text())["datasets"]["shapes"]
    assert entry["format"] == "npz" and entry["classes"] == [0, 1, 2]
    assert entry["source"]["files"] == [
        {
            "name": "shapes.npz",
            "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            "size": file.stat().st_size,
        }
    ]
    assert entry["split_counts"] == {"train": 20, "test": 6}
    assert entry["image"] == {"height": 16, "width": 16, "channels": 1}
    assert "shapes-random_forest" in added.runs and "shapes-mlp" in added.runs
    assert f"CONVBENCH_MIRROR={tmp_path}" in added.next_steps[0]


def test_a_url_is_downloaded_pinned_and_listed(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment cannot reach it
    served = tmp_path / "served"
    served.mkdir()
    x = np.zeros((12, 8, 8, 3), dtype=np.uint8)
    y = np.arange(12) % 2
    np.savez(served / "tiny.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny.npz"
        try:
            with pytest.raises(DatasetAddError, match="carries a credential"):
                add_dataset(project / "params.yaml", "tiny", url + "?token=abc")
            added = add_dataset(project / "params.yaml", "tiny", url)
        finally:
            server.shutdown()
    (file,) = added.entry["source"]["files"]
    assert file["urls"] == [url] and file["size"] == (served / "tiny.npz").stat().st_size
    assert added.entry["image"] == {"height": 8, "width": 8, "channels": 3}
    assert list(added.runs) == ["tiny-cifar_cnn"]  # small colour: the CIFAR-10 deck's CNN


def test_an_existing_name_needs_force_which_replaces_it(project: Path) -> None:
    pets_folder(project)
    add_dataset(project / "params.yaml", "pets", FOLDER)
    once = (project / "params.yaml").read_text()
    with pytest.raises(DatasetAddError, match=r"datasets\.pets exists; --force"):
        add_dataset(project / "params.yaml", "pets", FOLDER)
    with pytest.raises(DatasetAddError, match=r"datasets\.mnist exists"):
        add_dataset(project / "params.yaml", "mnist", FOLDER)
    add_dataset(project / "params.yaml", "pets", FOLDER, force=True)
    assert (project / "params.yaml").read_text() == once  # the same entry, once


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"cats": 2}, r"data/external/pets: 1 class folder\(s\) \['cats'\]; .* at least 2"),
        ({"cats": 2, "dogs": 0}, r"data/external/pets/dogs: no files \(the class folder is empty"),
    ],
)
def test_a_folder_that_is_no_dataset_is_refused_naming_it(
    project: Path, layout: dict[str, int], message: str
) -> None:
    for cls, count in layout.items():
        (project / FOLDER / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (40, 40)).save(project / FOLDER / cls / f"{i}.jpg")
    before = (project / "params.yaml").read_text()
    with pytest.raises(SurveyError, match=message):
        add_dataset(project / "params.yaml", "pets", FOLDER)
    assert (project / "params.yaml").read_text() == before
    assert not dvc_file_of(project / FOLDER).exists()  # refused before `dvc add`


def test_a_folder_outside_the_project_or_an_unknown_format_is_refused(
    project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    pets_folder(tmp_path, "elsewhere")
    with pytest.raises(DatasetAddError, match=r"outside the project.*cp -r"):
        add_dataset(project / "params.yaml", "pets", str(outside))
    (tmp_path / "data.bin").write_bytes(b"\x00")
    with pytest.raises(DatasetAddError, match="--format npz or image_folders"):
        add_dataset(project / "params.yaml", "pets", str(tmp_path / "data.bin"))


def test_a_wrapping_folder_is_looked_through(tmp_path: Path) -> None:
    """Like the Kaggle set: PetImages/{Cat,Dog} beside a readme; grey RGB files are grey."""
    pets = tmp_path / "kaggle"
    for cls in ("Dog", "Cat"):
        (pets / "PetImages" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (60 + i, 50), (90, 90, 90)).save(pets / "PetImages" / cls / f"{i}.jpg")
    (pets / "readme.txt").write_text("about the data\n")
    found = survey_folder(pets, "kaggle")
    assert found.root == "PetImages" and not found.split_folders
    assert found.classes == ("Cat", "Dog") and found.counts == {"all": {"Cat": 3, "Dog": 3}}
    assert (found.height, found.width, found.min_side, found.grey) == (50, 61, 50, True)
