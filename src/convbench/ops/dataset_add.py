"""`convbench dataset add NAME PATH_OR_URL`: your own data set, declared in params.yaml.

A folder of class folders inside the project is tracked with ``dvc add`` and pinned by
the md5 DVC records; a file (a path or an http(s) URL: an ``.npz`` of arrays, or a zip
or tar of class folders) is pinned by its sha256 and size. Either way the classes,
splits and image sizes are read from the data, the entry and the decks' runs that fit
it are written into params.yaml (its comments and layout kept), and the whole file is
validated first, so nothing invalid is written.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
import yaml

from convbench.core.errors import ConvbenchError
from convbench.core.redact import has_secret, redact
from convbench.data.local_folder import dvc_file_of, recorded_md5
from convbench.ops import dataset_entry as entries
from convbench.ops.dataset_survey import FolderSurvey, survey_archive, survey_folder
from convbench.ops.params_edit import Change, edit_params
from convbench.settings import KnownNames, Params, SettingsError, parse_params

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class DatasetAddError(ConvbenchError, ValueError):
    """The data set cannot be added as asked; the message says why and what to do."""


@dataclass
class Added:
    """What `dataset add` wrote, for the summary it prints."""

    name: str
    entry: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    left_out: list[str]
    transfer: dict[str, dict[str, Any]]
    survey: FolderSurvey | None
    next_steps: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dvc_add(root: Path, folder: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "add", folder], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        output = redact((result.stderr or result.stdout).strip()[-2000:])
        raise DatasetAddError(f"`dvc add {folder}` failed:\n{output}")


def _from_folder(root: Path, name: str, folder: Path) -> tuple[dict, FolderSurvey, list[str]]:
    folder = folder.resolve()
    if not folder.is_relative_to(root):
        raise DatasetAddError(
            f"{folder} is outside the project {root}: DVC tracks folders inside it. Copy it "
            f"in first, e.g. `cp -r {folder} {root}/data/external/{name}`, and add that"
        )
    relative = folder.relative_to(root).as_posix()
    survey = survey_folder(folder, relative)  # refuse a bad folder before `dvc add`
    _dvc_add(root, relative)
    source = {
        "description": f"{relative}, tracked with `dvc add`",
        "path": relative,
        "md5": recorded_md5(dvc_file_of(folder)),
    }
    ignore = (folder.parent / ".gitignore").relative_to(root).as_posix()
    steps = [f"git add {relative}.dvc {ignore} params.yaml  # dvc push shares the images"]
    return entries.folder_entry(survey, source), survey, steps


def _guess_format(file: str, given: str | None) -> str:
    if given is not None:
        if given not in ("npz", "image_folders"):
            raise DatasetAddError(
                f"--format {given}: `dataset add` writes npz or image_folders entries; "
                "write an idx or cifar10_python entry by hand (see params.yaml's mnist)"
            )
        return given
    if file.endswith(".npz"):
        return "npz"
    if file.endswith(ARCHIVES):
        return "image_folders"
    raise DatasetAddError(f"{file}: cannot tell its format; give --format npz or image_folders")


def _from_file(path: Path, url: str | None, fmt: str) -> tuple[dict, FolderSurvey | None]:
    pinned: dict[str, Any] = {"name": path.name, "sha256": _sha256(path)}
    pinned["size"] = path.stat().st_size
    if url is not None:
        pinned["urls"] = [url]
    source = {"description": f"{path.name}, added by `convbench dataset add`", "files": [pinned]}
    if fmt == "image_folders":
        survey = survey_archive(path)
        return entries.folder_entry(survey, source), survey
    from convbench.data.npz import load_npz

    splits = load_npz(path)
    images = splits["train"][0]
    labels = sorted({int(v) for _, y in splits.values() for v in y})
    if labels != list(range(len(labels))) or len(labels) < 2:
        raise DatasetAddError(
            f"{path}: labels {labels[:12]}; expected 0, 1, ... (2 classes or more)"
        )
    shape = (*images.shape[1:3], images.shape[3] if images.ndim == 4 else 1)
    counts = {split: len(y) for split, (_, y) in splits.items()}
    return entries.array_entry(source, shape, len(labels), counts), None


def _entry_for(
    root: Path, name: str, location: str, fmt: str | None
) -> tuple[dict, FolderSurvey | None, list[str]]:
    if urlparse(location).scheme in ("http", "https"):
        from convbench.data.transport import CandidateFailed, download_http

        if has_secret(location):  # params.yaml is in git: no token goes there
            raise DatasetAddError(
                f"{redact(location)}: the URL carries a credential; params.yaml is tracked "
                "by git, so download the file and add it by its path (CONVBENCH_MIRROR)"
            )

        file = PurePosixPath(urlparse(location).path).name
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / file
            try:
                download_http(location, target, retries=2, backoff=1.0, timeout=60.0)
            except CandidateFailed as error:
                raise DatasetAddError(f"{location}: cannot download it ({error})") from None
            entry, survey = _from_file(target, location, _guess_format(file, fmt))
        return entry, survey, []
    path = Path(location).expanduser()
    if path.is_dir():
        return _from_folder(root, name, path)
    if not path.is_file():
        raise DatasetAddError(f"{location}: no such folder or file (nor an http(s) URL)")
    entry, survey = _from_file(path, None, _guess_format(path.name, fmt))
    mirror = f"export CONVBENCH_MIRROR={path.resolve().parent}  # where download finds {path.name}"
    return entry, survey, [mirror]


def _validated(raw: dict, origin: str, known: KnownNames | None = None) -> Params:
    try:
        return parse_params(raw, origin=origin, known=known)
    except SettingsError as error:
        raise DatasetAddError(
            f"the new entry would not be valid (params.yaml not changed):\n{error}"
        ) from None


def add_dataset(
    params: Path,
    name: str,
    location: str,
    *,
    base: str | None = None,
    fmt: str | None = None,
    force: bool = False,
) -> Added:
    """Add ``datasets.<name>`` from ``location`` (and its runs) to the ``params`` file."""
    from convbench.models.variants import VARIANTS  # the catalogue the runs are checked on

    params = params.resolve()
    raw = yaml.safe_load(params.read_text())
    current = parse_params(raw, origin=str(params))
    if not NAME.match(name):
        raise DatasetAddError(f"{name!r}: a dataset name is a letter, then letters, digits, _")
    if name in current.datasets and not force:
        raise DatasetAddError(f"datasets.{name} exists; --force replaces it (and its runs)")
    if base is not None and base not in current.pretrained:
        raise DatasetAddError(
            f"--base {base}: unknown; pretrained has {sorted(current.pretrained)}"
        )
    entry, survey, steps = _entry_for(params.parent, name, location, fmt)
    stale = {f"{name}-{variant}" for variant in entries.ALL_VARIANTS} & set(raw.get("runs") or {})
    runs_raw = {k: v for k, v in (raw.get("runs") or {}).items() if k not in stale}
    raw = {**raw, "datasets": {**raw["datasets"], name: entry}, "runs": runs_raw}
    shape = (entry["image"]["height"], entry["image"]["width"])
    grey = survey.grey if survey is not None else entry["image"]["channels"] == 1
    candidates = entries.candidate_runs(*shape, grey, arrays=survey is None)
    runs, left_out = entries.fitting_runs(_validated(raw, str(params)), name, candidates, VARIANTS)
    transfer = {}
    if base is not None:
        architecture = current.pretrained[base].architecture
        transfer[f"{name}-{architecture}"] = entries.transfer_entry(name, base)
    raw["runs"] = {**runs_raw, **runs}
    raw["transfer"] = {**(raw.get("transfer") or {}), **transfer}
    _validated(raw, str(params), KnownNames(variants=VARIANTS))
    summary = _describe(entry, survey)
    changes = [Change("datasets", name, entry, f"`convbench dataset add`: {summary}")]
    changes += [Change("runs", key, None) for key in sorted(stale - set(runs))]
    changes += [Change("runs", key, value) for key, value in runs.items()]
    changes += [Change("transfer", key, value) for key, value in transfer.items()]
    edit_params(params, changes)
    steps.append(
        f"make run DATASET={name}  # or: .venv/bin/python -m flows.experiment --dataset {name}"
    )
    return Added(name, entry, runs, left_out, transfer, survey, steps)


def _describe(entry: dict[str, Any], survey: FolderSurvey | None) -> str:
    image = entry["image"]
    size = f"{image['height']}x{image['width']}x{image['channels']}"
    if survey is None:
        return f"{len(entry['classes'])} classes of {size} arrays"
    kind = "grey" if survey.grey else "colour"
    return (
        f"{len(survey.classes)} classes, {survey.files} files, median "
        f"{survey.height}x{survey.width} {kind}, used at {size}"
    )


dataset_app = typer.Typer(no_args_is_help=True, help="Your own data sets in params.yaml.")


@dataset_app.command("add")
def add(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="its key under `datasets` in params.yaml")
    ],
    location: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_URL",
            help="a folder of class folders in the project, or an .npz / zip / tar file or URL",
        ),
    ],
    base: Annotated[
        str | None, typer.Option(help="a `pretrained` key: add transfer learning from it too")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="npz or image_folders (else from the name)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing entry")] = False,
    params: Annotated[Path, typer.Option(help="the params file")] = Path("params.yaml"),
) -> None:
    """Add a data set (and the decks' runs that fit it) to params.yaml."""
    try:
        added = add_dataset(params, name, location, base=base, fmt=fmt, force=force)
    except ConvbenchError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"datasets.{added.name}: {_describe(added.entry, added.survey)}")
    classes = added.entry["classes"]
    typer.echo(f"  classes (label order): {', '.join(map(str, classes))}")
    for split, per_class in (added.survey.counts if added.survey else {}).items():
        typer.echo(f"  {split}: " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
    typer.echo(f"  runs: {', '.join(added.runs) or 'none'}")
    if added.transfer:
        typer.echo(f"  transfer: {', '.join(added.transfer)}")
    for reason in added.left_out:
        typer.echo(f"  left out: {reason}")
    typer.echo("Next:\n" + "\n".join(f"  {step}" for step in added.next_steps))
