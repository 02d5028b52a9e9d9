"""The error a failed validation raises, and its message: each failed expectation, a few
offending rows, where the Data Docs are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.core.errors import ConvbenchError


class DataValidationError(ConvbenchError, RuntimeError):
    """The manifest failed at least one expectation (the Data Docs were written first).

    ``failures`` holds one dict per failed expectation (see
    :func:`~convbench.data.validation.checkpoint.validate_manifest`); ``summary`` is the
    same summary a passing run returns, with ``success`` false.
    """

    def __init__(
        self, dataset: str, failures: list[dict], summary: dict, docs_index: Path | None = None
    ) -> None:
        self.dataset = dataset
        self.failures = failures
        self.summary = summary
        self.docs_index = docs_index
        super().__init__(_failure_message(dataset, failures, summary, docs_index))


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
