"""Validate an image manifest with a Great Expectations (1.x) suite; write Data Docs.

:func:`validate_manifest` runs the suite for one dataset through a GX Checkpoint on an
ephemeral (in-memory) context whose only Data Docs site is a folder the caller names, so
the HTML report is written whether or not the data passes. A failed expectation raises
:class:`DataValidationError` *after* the report is written; its message names each
failed expectation and shows a few offending manifest rows.

Great Expectations is imported on first use (the import alone takes seconds), with its
usage statistics switched off before the import.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from convbench.core.atomic import atomic_dir, atomic_path
from convbench.core.errors import ConvbenchError
from convbench.data.manifest import DERIVED_COLUMNS, MANIFEST_COLUMNS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (*MANIFEST_COLUMNS, *DERIVED_COLUMNS)
ID_COLUMN = "image_id"
SHOWN_ROWS = 5
DETAIL_LIMIT = 10_000  # offending rows (all expectations) up to which the docs show values
DOCS_SITE = "convbench"

# The columns worth seeing beside the one an expectation is about.
_CONTEXT_COLUMNS = {"shared_across_splits": ("content_hash",)}


@dataclass(frozen=True)
class ImageExpectations:
    """What every image of an array dataset must be; the suite is built from this."""

    labels: tuple[int | str, ...]
    split_counts: dict[str, int] = field(hash=False)
    height: int
    width: int
    channels: int
    dtype: str = "uint8"
    pixel_min: float = 0
    pixel_max: float = 255


@dataclass(frozen=True)
class FileExpectations:
    """What the image files of a folder dataset must be (one manifest row per file)."""

    labels: tuple[int | str, ...]
    splits: tuple[str, ...]
    split_counts: dict[str, int] | None = field(default=None, hash=False)  # files per split
    min_side: int = 32
    max_bad_fraction: float = 0.02  # quarantined (or too small) files tolerated
    min_class_ratio: float = 0.8  # smallest class over largest, per split


FILE_COLUMNS = (
    "image_id",
    "split",
    "label",
    "status",
    "reason",
    "min_side",
    "channels",
    "content_hash",
    "shared_across_splits",
    "split_rows",
    "expected_split_rows",
    "class_ratio",
)


class DataValidationError(ConvbenchError, RuntimeError):
    """The manifest failed at least one expectation (the Data Docs were written first).

    ``failures`` holds one dict per failed expectation (see :func:`validate_manifest`);
    ``summary`` is the same summary a passing run returns, with ``success`` false.
    """

    def __init__(
        self, dataset: str, failures: list[dict], summary: dict, docs_index: Path | None = None
    ) -> None:
        self.dataset = dataset
        self.failures = failures
        self.summary = summary
        self.docs_index = docs_index
        super().__init__(_failure_message(dataset, failures, summary, docs_index))


# --------------------------------------------------------------------------- GX plumbing


def _gx() -> Any:
    """great_expectations, imported with analytics off and its logging quietened."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _context(gx: Any, site_dir: Path) -> Any:
    """An in-memory context: no analytics, no progress bars, one Data Docs site."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.config.analytics_enabled = False
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # The ephemeral context comes with a "local_site" in a fresh temporary folder; the
    # report belongs in site_dir instead.
    for name in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(name)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _plain(values: Iterable[Any]) -> list[Any]:
    """Python ints/floats/strs (a NumPy scalar would not serialise into the suite)."""
    return [v.item() if hasattr(v, "item") else v for v in values]


def build_suite(expectations: ImageExpectations | FileExpectations, dataset: str) -> Any:
    """The expectation suite ``{dataset}_images`` (a ``gx.ExpectationSuite``, not yet stored).

    GX 1.x builds suites only while a Data Context is current (``gx.get_context()``).
    """
    gx = _gx()
    suite = gx.ExpectationSuite(
        name=f"{dataset}_images",
        meta={"notes": f"One row per image of {dataset}; built by convbench.data.validation."},
    )
    build = (
        _file_expectations if isinstance(expectations, FileExpectations) else _array_expectations
    )
    for expectation in build(gx.expectations, expectations):
        suite.add_expectation(expectation)
    return suite


def _file_expectations(E: Any, expectations: FileExpectations) -> list[Any]:
    good = 1.0 - expectations.max_bad_fraction
    checks = [
        E.ExpectTableColumnsToMatchSet(
            column_set=list(FILE_COLUMNS),
            exact_match=False,
            description="Every manifest column is present.",
        ),
        E.ExpectColumnValuesToBeUnique(column=ID_COLUMN),
        E.ExpectColumnValuesToNotBeNull(column="label"),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=_plain(expectations.labels)),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(expectations.splits)),
        E.ExpectColumnDistinctValuesToEqualSet(
            column="split",
            value_set=list(expectations.splits),
            description="No expected split is missing.",
        ),
        E.ExpectColumnValuesToBeNull(
            column="reason",
            mostly=good,
            description=(
                f"At most {expectations.max_bad_fraction:.0%} of the files are quarantined; "
                "each one's reason is listed."
            ),
        ),
        E.ExpectColumnValuesToBeBetween(
            column="min_side",
            min_value=expectations.min_side,
            mostly=good,
            description=(
                f"Images are at least {expectations.min_side} pixels on their shorter side."
            ),
        ),
        E.ExpectColumnValuesToBeInSet(
            column="channels",
            value_set=[3],
            description="Every accepted image is RGB (converted if it was not).",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="shared_across_splits",
            value_set=[False],
            description="No image (by decoded pixels) occurs in more than one split: no leakage.",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="class_ratio",
            min_value=expectations.min_class_ratio,
            max_value=1.0,
            description=(
                "Classes are balanced: in each split the smallest class has at least "
                f"{expectations.min_class_ratio:.0%} of the images of the largest."
            ),
        ),
    ]
    if expectations.split_counts:
        checks.append(
            E.ExpectColumnPairValuesToBeEqual(
                column_A="split_rows",
                column_B="expected_split_rows",
                description="Each split has its expected number of files.",
            )
        )
    return checks


def _array_expectations(E: Any, expectations: ImageExpectations) -> list[Any]:
    splits = [str(split) for split in expectations.split_counts]
    present_splits = [s for s, n in expectations.split_counts.items() if int(n) > 0]
    return [
        E.ExpectTableColumnsToMatchSet(
            column_set=list(REQUIRED_COLUMNS),
            exact_match=False,
            description="Every manifest column is present.",
        ),
        E.ExpectTableRowCountToEqual(
            value=int(sum(expectations.split_counts.values())),
            description="As many images as all the expected splits together.",
        ),
        E.ExpectColumnValuesToBeUnique(column=ID_COLUMN),
        E.ExpectColumnValuesToNotBeNull(column="label"),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=_plain(expectations.labels)),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=splits),
        E.ExpectColumnDistinctValuesToEqualSet(
            column="split",
            value_set=present_splits,
            description="No expected split is missing.",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="height", min_value=expectations.height, max_value=expectations.height
        ),
        E.ExpectColumnValuesToBeBetween(
            column="width", min_value=expectations.width, max_value=expectations.width
        ),
        E.ExpectColumnValuesToBeBetween(
            column="channels", min_value=expectations.channels, max_value=expectations.channels
        ),
        E.ExpectColumnValuesToBeInSet(column="dtype", value_set=[expectations.dtype]),
        E.ExpectColumnValuesToBeBetween(column="min_pixel", min_value=expectations.pixel_min),
        E.ExpectColumnValuesToBeBetween(column="max_pixel", max_value=expectations.pixel_max),
        E.ExpectColumnValuesToNotBeNull(column="content_hash"),
        E.ExpectColumnValuesToBeInSet(
            column="shared_across_splits",
            value_set=[False],
            description="No image (by content hash) occurs in more than one split: no leakage.",
        ),
        E.ExpectColumnPairValuesToBeEqual(
            column_A="split_rows",
            column_B="expected_split_rows",
            description="Each split has its expected number of images.",
        ),
    ]


def _gx_frame(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest as GX gets it: indexed by image_id when that is a usable key.

    With ``image_id`` as the (named) index GX can list offending ids without reading the
    rows one by one (see :func:`_result_format`).
    """
    if (
        ID_COLUMN in manifest.columns
        and manifest[ID_COLUMN].notna().all()
        and manifest[ID_COLUMN].is_unique
    ):
        return manifest.set_index(ID_COLUMN, drop=False)
    return manifest


# A first pass counts failures only: cheap whatever fails. GX lists offending rows one
# row at a time (about 0.1-0.2 ms a row, several seconds for a whole failed column), so
# the listing pass runs only where few rows fail.
_QUICK_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 20}


def _result_format(frame: pd.DataFrame, values: bool = True) -> dict:
    """COMPLETE results naming each offending row by its image_id.

    With ``values`` GX keeps each offending row's values too (the Data Docs show them in
    a table beside the ids); without, one list of ids per expectation, which GX builds
    much faster when image_id is the frame's index (see :func:`_gx_frame`).
    """
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE",
        # The query is a pandas expression listing every offending index: bulky, unused.
        "return_unexpected_index_query": False,
        "partial_unexpected_count": 20,
    }
    if ID_COLUMN in frame.columns:  # naming a missing column would break every expectation
        result_format["unexpected_index_column_names"] = [ID_COLUMN]
    if not values:
        result_format["exclude_unexpected_values"] = True
    return result_format


@dataclass
class _Run:
    context: Any
    batch_definition: Any
    suite: Any
    result: Any  # ExpectationSuiteValidationResult
    page: str | None  # the validation page, relative to the site folder


def _run_checkpoint(
    gx: Any,
    frame: pd.DataFrame,
    expectations: ImageExpectations | FileExpectations,
    dataset: str,
    site_dir: Path,
    result_format: dict,
) -> _Run:
    """Run the suite on ``frame`` through a Checkpoint that updates the Data Docs in site_dir."""
    context = _context(gx, site_dir)
    source = context.data_sources.add_pandas(name="manifest")
    asset = source.add_dataframe_asset(name=dataset)
    batch_definition = asset.add_batch_definition_whole_dataframe("all_rows")
    suite = context.suites.add(build_suite(expectations, dataset))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}_manifest", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"validate_{dataset}",
            validation_definitions=[definition],
            actions=[
                gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])
            ],
            result_format=result_format,
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        run_id=gx.RunIdentifier(run_name=f"validate_{dataset}"),
    )
    ((identifier, suite_result),) = result.run_results.items()
    return _Run(
        context, batch_definition, suite, suite_result, _site_page(context, identifier, site_dir)
    )


def _unexpected_rows(suite_result: Any) -> int:
    """Offending rows over all expectations, met or not (``mostly`` lets some through)."""
    return sum(int((r.result or {}).get("unexpected_count") or 0) for r in suite_result.results)


def _list_offending_ids(run: _Run, frame: pd.DataFrame, outcome: dict) -> None:
    """Add the offending image ids to the failed results of a quick run (in ``outcome``).

    The failed expectations run again on the batch, outside the Checkpoint (the Data Docs
    keep the quick run), with a result that lists ids only.
    """
    failed = {
        r["expectation_config"].get("id"): r
        for r in outcome["results"]
        if not r["success"] and (r.get("result") or {}).get("unexpected_count")
    }
    if not failed or ID_COLUMN not in frame.columns:
        return
    batch = run.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    for expectation in run.suite.expectations:
        if expectation.id in failed:
            listed = batch.validate(expectation, result_format=_result_format(frame, False))
            ids = _unexpected_ids(listed.result or {})
            failed[expectation.id]["result"]["unexpected_index_list"] = [{ID_COLUMN: ids}]


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# ------------------------------------------------------------------------ the entry point


def validate_manifest(
    manifest: pd.DataFrame,
    expectations: ImageExpectations | FileExpectations,
    dataset: str,
    docs_dir: Path,
) -> dict:
    """Validate ``manifest`` (with derived columns) and write the Data Docs to ``docs_dir``.

    ``docs_dir`` is replaced as a whole (built beside it, then renamed into place), so it
    holds exactly this run's report; its ``index.html`` is the page to open.

    The Checkpoint runs first with results that count failures only (fast, whatever
    fails). If something failed on at most ``DETAIL_LIMIT`` rows in all, it runs again
    with COMPLETE results naming each offending row by image_id, and the Data Docs show
    the offending values and ids. Above that (a whole column failing: a wrong shape
    setting, say) the Data Docs keep the counts and sample values, and the failed
    expectations alone are re-run for the ids; ``docs_detail`` in the summary says which.

    Returns a JSON-serialisable summary: ``dataset``, ``suite``, ``success``,
    ``evaluated_expectations``, ``successful_expectations``,
    ``unsuccessful_expectations``, ``success_percent``, ``rows``, ``rows_per_split``,
    ``expectations`` (one ``{expectation, type, columns, success, unexpected_count,
    ...}`` per expectation), ``docs_detail`` and ``data_docs`` / ``data_docs_validation``:
    the index page and this run's validation page, as POSIX paths *relative to
    docs_dir's parent* (the folder the stage writes ``summary.json`` to).

    Raises :class:`DataValidationError` (carrying the same summary) if any expectation
    failed; the Data Docs are written before it is raised.
    """
    docs_dir = Path(docs_dir).resolve()  # GX wants an absolute folder for its docs site
    gx = _gx()
    frame = _gx_frame(manifest)
    with atomic_dir(docs_dir) as site_dir:
        run = _run_checkpoint(gx, frame, expectations, dataset, site_dir, _QUICK_FORMAT)
        if _unexpected_rows(run.result) == 0:
            detail = "all expectations met"
        elif _unexpected_rows(run.result) <= DETAIL_LIMIT:
            _empty(site_dir)
            run = _run_checkpoint(gx, frame, expectations, dataset, site_dir, _result_format(frame))
            detail = "offending values and image ids"
        else:
            detail = f"counts and sample values (over {DETAIL_LIMIT} offending rows)"
    if not (docs_dir / "index.html").exists():
        raise RuntimeError(f"Great Expectations wrote no Data Docs index under {docs_dir}")

    outcome = run.result.to_json_dict()
    if not outcome["success"] and detail.startswith("counts"):
        _list_offending_ids(run, frame, outcome)
    # GX reports table-level expectations first; the suite's own order reads better.
    order = {expectation.id: i for i, expectation in enumerate(run.suite.expectations)}
    outcome["results"].sort(key=lambda r: order.get(r["expectation_config"].get("id"), len(order)))
    summary = _summary(outcome, manifest, dataset, docs_dir, run.page)
    summary["docs_detail"] = detail
    log.info(
        "%s: %d/%d expectations met; Data Docs: %s",
        dataset,
        summary["successful_expectations"],
        summary["evaluated_expectations"],
        docs_dir / "index.html",
    )
    if not summary["success"]:
        failures = [_failure(r, manifest) for r in outcome["results"] if not r["success"]]
        raise DataValidationError(dataset, failures, summary, docs_dir / "index.html")
    return summary


def write_summary(summary: dict, path: Path) -> None:
    """Write ``summary`` as JSON, atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


# ------------------------------------------------------------------------------- results


def _site_page(context: Any, identifier: Any, site_dir: Path) -> str | None:
    """This run's validation page, relative to the site folder (None if not found)."""
    try:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=DOCS_SITE)
        url = urls[0]["site_url"]
        page = Path(unquote(urlparse(url).path)).resolve()
        return page.relative_to(site_dir.resolve()).as_posix()
    except Exception:  # a nicety: the index page links to it anyway
        log.debug("could not locate the validation page", exc_info=True)
        return None


def _exception(r: Mapping[str, Any]) -> str | None:
    """The error message of an expectation GX could not evaluate (e.g. a missing column).

    ``exception_info`` is either flat (``raised_exception``, ``exception_message``) or, when
    a metric failed, a mapping from metric id to such a dict.
    """
    info = r.get("exception_info") or {}
    candidates = [info, *(v for v in info.values() if isinstance(v, Mapping))]
    messages = [c.get("exception_message") for c in candidates if c.get("raised_exception")]
    return "; ".join(dict.fromkeys(m for m in messages if m)) or None


def _columns(kwargs: Mapping[str, Any]) -> list[str]:
    columns = [kwargs[key] for key in ("column", "column_A", "column_B") if kwargs.get(key)]
    columns += list(kwargs.get("column_list") or [])
    return [str(c) for c in columns]


def _label(kind: str, columns: list[str]) -> str:
    return f"{kind}({', '.join(columns)})" if columns else kind


def _unexpected_ids(result: Mapping[str, Any]) -> list[str]:
    """image_ids from GX's list: one dict per row, or (values excluded) one dict of lists."""
    ids: list[str] = []
    for row in result.get("unexpected_index_list") or []:
        if isinstance(row, Mapping) and ID_COLUMN in row:
            value = row[ID_COLUMN]
            ids.extend(map(str, value) if isinstance(value, list) else [str(value)])
    return ids


def _summary(
    outcome: Mapping[str, Any],
    manifest: pd.DataFrame,
    dataset: str,
    docs_dir: Path,
    page: str | None,
) -> dict:
    stats = outcome["statistics"]
    entries = []
    for r in outcome["results"]:
        config, result = r["expectation_config"], r.get("result") or {}
        columns = _columns(config["kwargs"])
        entry: dict[str, Any] = {
            "expectation": _label(config["type"], columns),
            "type": config["type"],
            "columns": columns,
            "success": bool(r["success"]),
            "unexpected_count": result.get("unexpected_count"),
        }
        if result.get("observed_value") is not None:
            entry["observed_value"] = result["observed_value"]
        if not r["success"]:
            entry["unexpected_examples"] = _unexpected_ids(result)[:SHOWN_ROWS]
            exception = _exception(r)
            if exception:
                entry["exception"] = exception
        entries.append(entry)
    rows_per_split = (
        {str(k): int(v) for k, v in manifest.groupby("split", sort=False).size().items()}
        if "split" in manifest.columns
        else {}
    )
    base = docs_dir.parent
    return {
        "dataset": dataset,
        "suite": outcome.get("suite_name"),
        "success": bool(outcome["success"]),
        "evaluated_expectations": int(stats["evaluated_expectations"]),
        "successful_expectations": int(stats["successful_expectations"]),
        "unsuccessful_expectations": int(stats["unsuccessful_expectations"]),
        "success_percent": float(stats["success_percent"] or 0.0),
        "rows": len(manifest),
        "rows_per_split": rows_per_split,
        "expectations": entries,
        "data_docs": (docs_dir / "index.html").relative_to(base).as_posix(),
        "data_docs_validation": (docs_dir / page).relative_to(base).as_posix() if page else None,
        "paths_relative_to": "parent of the data docs folder",
    }


def _failure(r: Mapping[str, Any], manifest: pd.DataFrame) -> dict:
    config, result = r["expectation_config"], r.get("result") or {}
    columns = _columns(config["kwargs"])
    ids = _unexpected_ids(result)
    exception = _exception(r)
    return {
        "expectation": _label(config["type"], columns),
        "type": config["type"],
        "columns": columns,
        "kwargs": {k: v for k, v in config["kwargs"].items() if k != "batch_id"},
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": result.get("unexpected_percent"),
        "element_count": result.get("element_count"),
        "observed_value": result.get("observed_value"),
        "details": result.get("details"),
        "exception": exception,
        "unexpected_image_ids": ids,
        "rows": _offending_rows(manifest, ids, columns),
    }


def _offending_rows(manifest: pd.DataFrame, ids: list[str], columns: list[str]) -> list[dict]:
    """Up to SHOWN_ROWS manifest rows among ``ids`` (leaked images grouped by content)."""
    if not ids or ID_COLUMN not in manifest.columns:
        return []
    shown = [ID_COLUMN, "split", "label", *columns]
    for column in columns:
        shown += _CONTEXT_COLUMNS.get(column, ())
    shown = [c for c in dict.fromkeys(shown) if c in manifest.columns]
    context_columns = [c for column in columns for c in _CONTEXT_COLUMNS.get(column, ())]
    candidates = ids if context_columns else ids[:SHOWN_ROWS]
    rows = manifest.loc[manifest[ID_COLUMN].isin(candidates), shown]
    if context_columns and all(c in rows.columns for c in context_columns):
        rows = rows.sort_values([*context_columns, ID_COLUMN], kind="stable")
    return json.loads(rows.head(SHOWN_ROWS).to_json(orient="records"))


def _table(rows: Iterable[Mapping[str, Any]]) -> str:
    frame = pd.DataFrame(list(rows))
    return frame.to_string(index=False) if len(frame) else ""


# Expectations whose observed value is a long list, explained line by line instead.
_LISTED = {"expect_table_columns_to_match_set", "expect_column_distinct_values_to_equal_set"}
_NOT_SETTINGS = {
    "batch_id",
    "exact_match",
    "column",
    "column_A",
    "column_B",
    "column_list",
    "column_set",
}


def _settings(failure: Mapping[str, Any], limit: int = 80) -> str:
    """The expectation's own arguments, e.g. ``value_set=[0, 1, 2]``, shortened."""
    text = ", ".join(
        f"{key}={value!r}"
        for key, value in failure["kwargs"].items()
        if key not in _NOT_SETTINGS and value is not None
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_message(
    dataset: str, failures: list[dict], summary: Mapping[str, Any], docs_index: Path | None
) -> str:
    lines = [
        f"data validation of {dataset!r} failed: {len(failures)} of "
        f"{summary.get('evaluated_expectations', '?')} expectations not met "
        f"({summary.get('rows', '?')} manifest rows)"
    ]
    for failure in failures:
        line = f"- {failure['expectation']}"
        settings = _settings(failure)
        if settings:
            line += f" [{settings}]"
        if failure.get("unexpected_count") is not None:
            line += f": {failure['unexpected_count']} unexpected of {failure['element_count']} rows"
        elif failure.get("observed_value") is not None and failure["type"] not in _LISTED:
            line += f": observed {failure['observed_value']!r}"
        lines.append(line)
        missing = ((failure.get("details") or {}).get("mismatched") or {}).get("missing")
        if missing:
            lines.append(f"    missing columns: {', '.join(map(str, missing))}")
        if failure.get("type") == "expect_column_distinct_values_to_equal_set":
            expected = set(map(str, failure["kwargs"].get("value_set") or []))
            observed = set(map(str, failure.get("observed_value") or []))
            if expected - observed:
                lines.append(f"    absent: {', '.join(sorted(expected - observed))}")
            if observed - expected:
                lines.append(f"    unexpected: {', '.join(sorted(observed - expected))}")
        if failure.get("exception"):
            lines.append(f"    error: {failure['exception']}")
        if failure.get("rows"):
            count = failure.get("unexpected_count") or len(failure["unexpected_image_ids"])
            lines.append(f"    first {len(failure['rows'])} of {count} offending rows:")
            lines += ["      " + row for row in _table(failure["rows"]).splitlines()]
    if docs_index is not None:
        lines.append(f"Data Docs: {docs_index}")
    return "\n".join(lines)
