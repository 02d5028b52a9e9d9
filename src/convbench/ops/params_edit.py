"""Entries set in params.yaml in place: the rest of the file, comments and layout, kept
byte for byte.

ruamel.yaml's round trip (with DVC's settings, as ``dvc exp run -S`` writes params)
finds the lines of each section and entry, and dumps the new entries; only those lines
change. Should the result not read back as intended (a layout this does not expect),
the whole file is written by the round trip instead: comments kept, a few long lines
possibly re-wrapped.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from convbench.core.atomic import write_text


@dataclass(frozen=True)
class Change:
    """Set ``section.key`` to ``value`` (None: remove the key), ``comment`` on its line."""

    section: str
    key: str
    value: Any | None
    comment: str | None = None


def _yaml() -> YAML:
    rt = YAML()
    rt.default_flow_style = False  # DVC's choice: new mappings as blocks unless flow()
    return rt


def flow(mapping: dict[str, Any]) -> CommentedMap:
    """``mapping`` written on one line, ``{a: 1, b: 2}``, as params.yaml writes small ones."""
    out = CommentedMap(mapping)
    out.fa.set_flow_style()
    return out


def _dump(key: str, value: Any, comment: str | None, indent: int) -> list[str]:
    entry = CommentedMap({key: value})
    if comment:  # one space after the colon, as params.yaml writes them
        entry.yaml_add_eol_comment(comment, key, column=len(key) + 2)
    stream = io.StringIO()
    _yaml().dump(entry, stream)
    return [
        " " * indent + line if line.strip() else line for line in stream.getvalue().splitlines(True)
    ]


def _loose(line: str, indent: int) -> bool:
    """A blank line, or a comment at most ``indent`` deep: it belongs to what follows."""
    stripped = line.strip()
    return not stripped or (stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent)


def _end(lines: list[str], start: int, end: int, indent: int) -> int:
    """``end`` moved up over the loose lines before it (never above ``start + 1``)."""
    while end > start + 1 and _loose(lines[end - 1], indent):
        end -= 1
    return end


def _apply(text: str, change: Change) -> str:
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    top = _yaml().load(text)
    keys = list(top)
    if change.section not in top:
        if change.value is None:
            return "".join(lines)
        block = _dump(change.key, change.value, change.comment, 2)
        return "".join([*lines, "\n", f"{change.section}:\n", *block])
    start = top.lc.key(change.section)[0]
    following = keys.index(change.section) + 1
    section_end = top.lc.key(keys[following])[0] if following < len(keys) else len(lines)
    section = top[change.section]
    if section is None:  # `transfer:` with nothing under it yet
        block = _dump(change.key, change.value, change.comment, 2) if change.value else []
        return "".join([*lines[: start + 1], *block, *lines[start + 1 :]])
    if not isinstance(section, CommentedMap) or section.fa.flow_style() or not section:
        raise ValueError(f"{change.section}: not a block mapping")
    indent = section.lc.key(next(iter(section)))[1]
    section_end = _end(lines, start, section_end, indent - 1)
    children = list(section)
    if change.key in section:
        at = section.lc.key(change.key)[0]
        index = children.index(change.key) + 1
        end = section.lc.key(children[index])[0] if index < len(children) else section_end
        end = _end(lines, at, end, indent)
    else:
        at = end = section_end
    block = [] if change.value is None else _dump(change.key, change.value, change.comment, indent)
    return "".join([*lines[:at], *block, *lines[end:]])


def _expected(text: str, changes: list[Change]) -> Any:
    data = copy.deepcopy(yaml.safe_load(text)) or {}
    for change in changes:
        section = data.get(change.section) or {}
        if change.value is None:
            section.pop(change.key, None)
        else:
            section[change.key] = yaml.safe_load(io.StringIO(_round(change.value)))
        if section or change.section in data:
            data[change.section] = section
    return data


def _round(value: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(value, stream)
    return stream.getvalue()


def edited(text: str, changes: list[Change]) -> str:
    """``text`` with ``changes`` made, in place where it can, else by a full round trip."""
    expected = _expected(text, changes)
    try:
        out = text
        for change in changes:
            out = _apply(out, change)
        if yaml.safe_load(out) == expected:
            return out
    except (ValueError, yaml.YAMLError):
        pass
    document = _yaml().load(text)
    for change in changes:
        if document.get(change.section) is None:
            document[change.section] = CommentedMap()
        section = document[change.section]
        if change.value is None:
            section.pop(change.key, None)
        else:
            section[change.key] = change.value
    stream = io.StringIO()
    _yaml().dump(document, stream)
    return stream.getvalue()


def edit_params(path: Path, changes: list[Change]) -> str:
    """Make ``changes`` to the params file at ``path`` (written atomically); its new text."""
    text = edited(path.read_text(), changes)
    write_text(path, text)
    return text
