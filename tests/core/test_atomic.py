"""All-or-nothing outputs: what a writer killed mid-write or mid-swap leaves behind is
cleared by the next run that writes the same output; nothing a live writer holds is."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from convbench.core.atomic import all_or_nothing, remove_stale_temporaries, write_text


def test_a_killed_writers_leftovers_go_with_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "train"
    model = tmp_path / "model"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    # A staged file and a staged folder whose writers died (no lock held), and the
    # previous metrics set aside by a swap that was killed half way.
    (out / ".metrics.json.x1.tmp.json").write_text("half")
    (tmp_path / ".model.x2.tmp").mkdir()
    (tmp_path / ".model.x2.tmp" / "model.keras").write_text("half")
    (tmp_path / ".model.x2.tmp.lock").write_text("")
    (out / ".metrics.json.old").write_text("older")

    with all_or_nothing() as outputs:
        write_text(outputs.file(out / "metrics.json"), "new")
        (outputs.folder(model) / "model.keras").write_text("new")

    assert (out / "metrics.json").read_text() == "new"
    assert (model / "model.keras").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "train"]


def test_a_live_writers_temporaries_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    live = tmp_path / ".history.csv.live.tmp.csv"
    live.write_text("being written")
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale_temporaries(target) == []
        assert live.exists()
    finally:
        os.close(fd)
    assert remove_stale_temporaries(target) == [live]


def test_a_swap_killed_before_the_new_output_arrived_puts_the_old_one_back(
    tmp_path: Path,
) -> None:
    target = tmp_path / "metrics.json"
    (tmp_path / ".metrics.json.old").write_text("last complete")
    remove_stale_temporaries(target)
    assert target.read_text() == "last complete"
    assert not (tmp_path / ".metrics.json.old").exists()
