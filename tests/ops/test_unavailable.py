"""Downloads known to be unavailable are not tried again until something that decides
them changes: the mirror's files, the mirror setting or the declaration."""

from __future__ import annotations

from pathlib import Path

from convbench.ops import unavailable
from convbench.ops.planning import left_to_run
from convbench.settings import Settings
from tests.conftest import with_dataset

STAGE = "download@cifar10"


def mirrored(settings: Settings, mirror: Path) -> Settings:
    return settings.model_copy(
        update={"env": settings.env.model_copy(update={"mirror": str(mirror)})}
    )


def test_the_state_changes_when_a_file_could_now_be_found(
    ci_settings: Settings, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    settings = mirrored(ci_settings, mirror)
    before = unavailable.input_state(settings, STAGE)
    assert unavailable.input_state(settings, STAGE) == before  # nothing changed
    (mirror / "unrelated.txt").write_text("x")
    assert unavailable.input_state(settings, STAGE) == before  # not a file of this source

    (mirror / "cifar10").mkdir()
    (mirror / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"a copy")
    in_folder = unavailable.input_state(settings, STAGE)
    assert in_folder != before
    (mirror / "cifar10" / "cifar-10-python.tar.gz").unlink()
    (mirror / "cifar-10-python.tar.gz").write_bytes(b"a copy")
    assert unavailable.input_state(settings, STAGE) not in (before, in_folder)

    assert unavailable.input_state(mirrored(ci_settings, tmp_path), STAGE) != before
    source = settings.dataset("cifar10").source
    files = [source.files[0].model_copy(update={"sha256": "0" * 64})]
    repinned = with_dataset(settings, "cifar10", source=source.model_copy(update={"files": files}))
    assert unavailable.input_state(repinned, STAGE) != unavailable.input_state(settings, STAGE)


def test_known_while_the_state_holds_forgotten_after_a_success(tmp_path: Path) -> None:
    assert unavailable.known_unavailable(tmp_path, STAGE, "s1") is None
    unavailable.remember(tmp_path, STAGE, "s1", "could not fetch cifar-10-python.tar.gz")
    unavailable.remember(tmp_path, "download@other", "s9", "also missing")
    assert unavailable.known_unavailable(tmp_path, STAGE, "s1") == (
        "could not fetch cifar-10-python.tar.gz"
    )
    assert unavailable.known_unavailable(tmp_path, STAGE, "s2") is None  # something changed
    unavailable.forget(tmp_path, STAGE)
    assert unavailable.known_unavailable(tmp_path, STAGE, "s1") is None
    assert unavailable.known_unavailable(tmp_path, "download@other", "s9") == "also missing"
    (tmp_path / ".convbench" / unavailable.RECORD).write_text("{not json")
    assert unavailable.known_unavailable(tmp_path, STAGE, "s1") is None  # tried, not trusted


def test_only_download_stages_have_a_state(ci_settings: Settings, tmp_path: Path) -> None:
    environ = {"CONVBENCH_MIRROR": str(tmp_path)}
    assert unavailable.download_state(tmp_path, "train@mnist-cnn", environ) is None


def test_what_is_left_to_run_leaves_out_the_known_unavailable_and_what_they_hold() -> None:
    dependents = {"download@cifar10": ["validate@cifar10", "prepare@cifar10", "train@c"]}
    changed = {"download@cifar10", "validate@cifar10", "prepare@cifar10"}
    assert left_to_run(changed, {"download@cifar10"}, dependents) == set()
    assert left_to_run(changed | {"train@m"}, {"download@cifar10"}, dependents) == {"train@m"}
    assert left_to_run(changed, set(), dependents) == changed
