"""Run a manifest's suite through a GX Checkpoint that writes the Data Docs.

:func:`validate_manifest` runs the suite for one dataset through a GX Checkpoint on an
ephemeral (in-memory) context whose only Data Docs site is a folder the caller names, so
the HTML report is written whether or not the data passes. A failed expectation raises
:class:`DataValidationError` *after* the report is written; its message names each
failed expectation and shows a few offending manifest rows.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.core.atomic import atomic_dir
from convbench.data.validation.context import DOCS_SITE, docs_context, import_gx, site_page
from convbench.data.validation.expectations import ID_COLUMN, FileExpectations, ImageExpectations
from convbench.data.validation.failure import DataValidationError
from convbench.data.validation.suite import build_suite
from convbench.data.validation.summary import failure_details, summarize, unexpected_ids

log = logging.getLogger(__name__)

DETAIL_LIMIT = 10_000  # offending rows (all expectations) up to which the docs show values


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
    context = docs_context(gx, site_dir)
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
        context, batch_definition, suite, suite_result, site_page(context, identifier, site_dir)
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
            ids = unexpected_ids(listed.result or {})
            failed[expectation.id]["result"]["unexpected_index_list"] = [{ID_COLUMN: ids}]


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


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
    gx = import_gx()
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
    summary = summarize(outcome, manifest, dataset, docs_dir, run.page)
    summary["docs_detail"] = detail
    log.info(
        "%s: %d/%d expectations met; Data Docs: %s",
        dataset,
        summary["successful_expectations"],
        summary["evaluated_expectations"],
        docs_dir / "index.html",
    )
    if not summary["success"]:
        failures = [failure_details(r, manifest) for r in outcome["results"] if not r["success"]]
        raise DataValidationError(dataset, failures, summary, docs_dir / "index.html")
    return summary
