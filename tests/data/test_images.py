"""Bad image files are quarantined with their reason, never deleted; training proceeds."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from convbench.data.images import CONVERTED, OK, QUARANTINED, ImagePolicy, inspect_image
from convbench.data.shards import read_ids_and_labels
from convbench.data.validation.failure import DataValidationError
from convbench.settings import Settings
from convbench.stages.prepare import prepare_dataset
from convbench.stages.train import train_run
from convbench.stages.validate import validate_dataset
from tests.conftest import drawn_image, encoded, folder_archive, tiny_cats_settings

POLICY = ImagePolicy(convert_to_rgb=True, max_pixels=1_000_000, min_side=32)


def corrupt_jpeg() -> bytes:
    """A JPEG whose header is fine but whose compressed data is garbage."""
    good = encoded(drawn_image(0, 1, (96, 80)))
    data = bytearray(good)
    start = good.find(b"\xff\xda")  # start of scan: the entropy-coded data follows
    data[start + 30 : start + 400] = b"\xff" * 370
    return bytes(data)


def truncated_jpeg() -> bytes:
    good = encoded(drawn_image(1, 2, (96, 80)))
    return good[: len(good) // 2]


BAD = {
    "corrupt": (corrupt_jpeg(), QUARANTINED, "corrupt image data"),
    "truncated": (truncated_jpeg(), QUARANTINED, "truncated"),
    "zero_byte": (b"", QUARANTINED, "empty file (0 bytes)"),
    "text": (b"Thumbs.db? no: a text file named .jpg\n", QUARANTINED, "not an image: text"),
    "cmyk": (encoded(drawn_image(1, 3), mode="CMYK"), CONVERTED, None),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_file_gets_its_outcome_and_reason(kind: str) -> None:
    data, status, reason = BAD[kind]
    check = inspect_image(data, POLICY)
    assert check.status == status
    if reason is None:
        assert check.reason is None
    else:
        assert check.reason is not None and check.reason.startswith(reason), check.reason


def test_cmyk_is_converted_to_rgb_or_quarantined_by_the_switch() -> None:
    data = BAD["cmyk"][0]
    converted = inspect_image(data, POLICY)
    assert converted.conversion == "CMYK -> RGB"
    with Image.open(__import__("io").BytesIO(converted.data)) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (48, 40))
    refused = inspect_image(data, ImagePolicy(convert_to_rgb=False))
    assert refused.status == QUARANTINED
    assert refused.reason == "needs conversion (CMYK -> RGB), which is switched off"


@pytest.mark.parametrize(
    ("fmt", "mode", "conversion"),
    [
        ("PNG", "L", "L -> RGB, PNG -> JPEG"),
        ("PNG", "P", "P -> RGB, PNG -> JPEG"),
        ("PNG", "RGBA", "RGBA -> RGB, PNG -> JPEG"),
        ("JPEG", "L", "L -> RGB"),
        ("GIF", "P", "P -> RGB, GIF -> JPEG"),
    ],
)
def test_grayscale_palette_alpha_and_other_formats_are_converted(
    fmt: str, mode: str, conversion: str
) -> None:
    check = inspect_image(encoded(drawn_image(0, 4), fmt=fmt, mode=mode), POLICY)
    assert (check.status, check.conversion) == (CONVERTED, conversion)
    assert check.data is not None and check.data.startswith(b"\xff\xd8")


def test_a_plain_rgb_jpeg_is_used_as_it_is() -> None:
    data = encoded(drawn_image(0, 5))
    check = inspect_image(data, POLICY)
    assert (check.status, check.data, check.width, check.height) == (OK, data, 48, 40)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 2,000 x 2,000 one-bit pixels: a few kB of PNG claiming 4 million pixels.
    bomb = encoded(Image.new("1", (2000, 2000)), fmt="PNG")
    assert len(bomb) < 10_000
    check = inspect_image(bomb, POLICY)
    assert check.status == QUARANTINED
    assert check.reason.startswith("oversized: 2000x2000 = 4,000,000 pixels, over the 1,000,000")


def test_too_small_images_are_quarantined() -> None:
    check = inspect_image(encoded(drawn_image(0, 6, (20, 60))), POLICY)
    assert check.reason == "too small: 20x60, the shorter side under 32"


# ----------------------------------------------------------------- through the stages


def bad_members() -> dict[str, bytes]:
    root = "cats_and_dogs_filtered"
    return {
        f"{root}/train/cats/corrupt.jpg": BAD["corrupt"][0],
        f"{root}/train/dogs/truncated.jpg": BAD["truncated"][0],
        f"{root}/train/cats/empty.jpg": b"",
        f"{root}/train/dogs/notes.jpg": BAD["text"][0],
        f"{root}/train/dogs/cmyk.jpg": BAD["cmyk"][0],
        f"{root}/vectorize.py": b"print('not in a class folder')\n",
    }


def test_validation_quarantines_and_training_proceeds(
    ci_settings: Settings, tmp_path: Path
) -> None:
    settings = tiny_cats_settings(ci_settings)
    raw = tmp_path / "raw"
    folder_archive(raw / "cats_and_dogs_filtered.zip", extra=bad_members())
    validated, report = tmp_path / "validated", tmp_path / "report"

    summary = validate_dataset(settings, "cats_and_dogs", raw, validated, report)
    assert summary["success"]
    reasons = {Path(q["file"]).name: q["reason"] for q in summary["quarantined"]}
    assert set(reasons) == {"corrupt.jpg", "truncated.jpg", "empty.jpg", "notes.jpg"}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"].startswith("not an image")
    assert [Path(c["file"]).name for c in summary["converted"]] == ["cmyk.jpg"]
    assert summary["ignored"] == [
        {"file": "cats_and_dogs_filtered/vectorize.py", "reason": "not in a class folder"}
    ]
    # Nothing lost: each quarantined file is kept, byte for byte, with its reason listed.
    members = bad_members()
    for entry in summary["quarantined"]:
        kept = validated / "quarantine" / entry["file"]
        assert kept.read_bytes() == members[entry["file"]]
    listed = pd.read_csv(validated / "quarantine.csv")
    assert set(listed["file"]) == {q["file"] for q in summary["quarantined"]}
    assert json.loads((report / "summary.json").read_text())["files"]["quarantined"] == 4
    # The Data Docs page of this validation lists each quarantined file and its reason.
    page = (report / summary["data_docs_validation"]).read_text()
    for entry in summary["quarantined"]:
        assert entry["file"] in page and entry["reason"].split(":")[0] in page

    info = prepare_dataset(
        settings, "cats_and_dogs", raw, validated, report / "summary.json", tmp_path / "prepared"
    )
    # 16 good training images + the converted CMYK one; the held-out split is used twice.
    assert info["splits"]["train"]["count"] == 17
    assert info["splits"]["validation"]["count"] == info["splits"]["test"]["count"] == 8
    ids, _ = read_ids_and_labels(
        [tmp_path / "prepared" / s["file"] for s in info["splits"]["train"]["shards"]]
    )
    assert "cats_and_dogs_filtered/train/dogs/cmyk.jpg" in ids
    assert not any(Path(i).name in reasons for i in ids)

    result = train_run(
        settings,
        "cats_and_dogs-small_cnn",
        tmp_path / "prepared",
        tmp_path / "model",
        tmp_path / "train",
        verbose=0,
    )
    assert result["epochs_run"] == 1 and result["train_images"] == 17
    assert (tmp_path / "train" / "input_preview.png").stat().st_size > 0


def test_too_many_bad_files_fail_the_stage_but_keep_the_report(
    ci_settings: Settings, tmp_path: Path
) -> None:
    settings = tiny_cats_settings(ci_settings, max_bad_fraction=0.05)
    raw = tmp_path / "raw"
    folder_archive(raw / "cats_and_dogs_filtered.zip", extra=bad_members())
    with pytest.raises(DataValidationError, match=r"expect_column_values_to_be_null\(reason\)"):
        validate_dataset(settings, "cats_and_dogs", raw, tmp_path / "validated", tmp_path / "rep")
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert not summary["success"] and len(summary["quarantined"]) == 4
    assert (tmp_path / "validated" / "quarantine" / "cats_and_dogs_filtered").is_dir()


def test_duplicates_across_splits_and_imbalance_fail_validation(
    ci_settings: Settings, tmp_path: Path
) -> None:
    settings = tiny_cats_settings(ci_settings)
    raw = tmp_path / "raw"
    archive = folder_archive(raw / "cats_and_dogs_filtered.zip")
    with zipfile.ZipFile(archive, "a") as extra:
        train_cat = extra.read("cats_and_dogs_filtered/train/cats/cat.train.0.jpg")
        extra.writestr("cats_and_dogs_filtered/validation/cats/leaked.jpg", train_cat)
        for i in range(12):  # far more cats than dogs in train
            extra.writestr(
                f"cats_and_dogs_filtered/train/cats/more.{i}.jpg",
                encoded(drawn_image(0, 500 + i)),
            )
    with pytest.raises(DataValidationError) as failed:
        validate_dataset(settings, "cats_and_dogs", raw, tmp_path / "validated", tmp_path / "rep")
    message = str(failed.value)
    assert "shared_across_splits" in message and "leaked.jpg" in message
    assert "class_ratio" in message


def test_every_image_is_decoded_once(ci_settings: Settings, tmp_path: Path, monkeypatch) -> None:
    """Validation inspects each file in a class folder exactly once."""
    import convbench.data.image_archive as image_archive

    settings = tiny_cats_settings(ci_settings)
    raw = tmp_path / "raw"
    folder_archive(raw / "cats_and_dogs_filtered.zip", extra=bad_members())
    seen: list[bytes] = []
    real = image_archive.inspect_image

    def counting(data: bytes, policy: ImagePolicy):  # a spy: the real function still runs
        seen.append(data)
        return real(data, policy)

    monkeypatch.setattr(image_archive, "inspect_image", counting)
    validate_dataset(settings, "cats_and_dogs", raw, tmp_path / "v", tmp_path / "r")
    members = bad_members()
    assert len(seen) == 24 + len(members) - 1  # each file in a class folder, once
    assert sorted(map(len, seen)) == sorted(
        [len(d) for n, d in members.items() if not n.endswith(".py")]
        + [len(s) for s in seen[:0]]
        + [len(d) for d in seen if d not in members.values()]
    )


def test_shards_have_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    """The prepared data's hash (and so every run's ``dataset_sha256`` and DVC's view of
    the prepare stage) must not change with the process's hash seed."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from convbench.data.shards import write_shards\n"
        "out = Path(sys.argv[1]); out.mkdir()\n"
        "write_shards(out, 'train', [b'\\xff\\xd8a', b'\\xff\\xd8b'], [0, 1], ['a', 'b'], 10)\n"
    )
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / seed)],
            env={**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"},
            check=True,
        )
    first, second = sorted((tmp_path / "1").iterdir()), sorted((tmp_path / "2").iterdir())
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
