"""What a validation run reports: its JSON summary, and the details of each failed expectation.

Both are read from GX's result (as a JSON dict); the offending rows are looked up in the
manifest by image_id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.core.atomic import atomic_path
from convbench.data.validation.expectations import ID_COLUMN

SHOWN_ROWS = 5

# The columns worth seeing beside the one an expectation is about.
_CONTEXT_COLUMNS = {"shared_across_splits": ("content_hash",)}


def write_summary(summary: dict, path: Path) -> None:
    """Write ``summary`` as JSON, atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


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


def unexpected_ids(result: Mapping[str, Any]) -> list[str]:
    """image_ids from GX's list: one dict per row, or (values excluded) one dict of lists."""
    ids: list[str] = []
    for row in result.get("unexpected_index_list") or []:
        if isinstance(row, Mapping) and ID_COLUMN in row:
            value = row[ID_COLUMN]
            ids.extend(map(str, value) if isinstance(value, list) else [str(value)])
    return ids


def summarize(
    outcome: Mapping[str, Any],
    manifest: pd.DataFrame,
    dataset: str,
    docs_dir: Path,
    page: str | None,
) -> dict:
    """The JSON summary of a run (see ``validate_manifest``), ``outcome`` its GX result."""
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
            entry["unexpected_examples"] = unexpected_ids(result)[:SHOWN_ROWS]
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


def failure_details(r: Mapping[str, Any], manifest: pd.DataFrame) -> dict:
    """One failed expectation for :class:`DataValidationError`: settings, counts, rows."""
    config, result = r["expectation_config"], r.get("result") or {}
    columns = _columns(config["kwargs"])
    ids = unexpected_ids(result)
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
