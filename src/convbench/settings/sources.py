"""The schema of a source: the files of a dataset or a pretrained base, with their pins,
or a local folder tracked with ``dvc add``. A new dataset is a declaration here, in
``params.yaml``; no source is named in code."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from convbench.settings.strict import Strict

_SHA256 = r"^[0-9a-f]{64}$"
_MD5 = r"^[0-9a-f]{32}$"


class SourceFile(Strict):
    """One published file: its name (also its name in a mirror), its pins, its URLs.

    At least one pin is required and every pin given is checked: the sha256, or the md5
    where a publisher gives only that, or (archives with no published checksum) the
    fingerprint of the members' contents, which a faithful repack keeps.
    """

    name: str = Field(pattern=r"^[^/\\]+$")  # a file name, no folders
    sha256: str | None = Field(default=None, pattern=_SHA256)
    md5: str | None = Field(default=None, pattern=_MD5)
    content_sha256: str | None = Field(default=None, pattern=_SHA256)
    # Bytes of every valid copy: tells a transfer cut short from a complete one where the
    # server sends no Content-Length. None where a repack is fine (a content pin only).
    size: int | None = Field(default=None, ge=1)
    urls: list[str] = Field(default_factory=list)  # tried in order, after the base URLs
    # idx files: the split this file belongs to and what it holds.
    split: str | None = None
    holds: Literal["images", "labels"] | None = None

    @model_validator(mode="after")
    def _pinned(self) -> SourceFile:
        if not (self.sha256 or self.md5 or self.content_sha256):
            raise ValueError(
                f"{self.name}: no pin; give its sha256 (`sha256sum {self.name}` prints it), "
                "md5 or content_sha256"
            )
        return self


class Source(Strict):
    """Where a dataset's or a base's files come from: published files, or a local folder.

    Files are looked for in the mirror (``CONVBENCH_MIRROR``) first, as
    ``<mirror>/<name>/<file>`` then ``<mirror>/<file>``, then at each base URL, then at
    the file's own URLs. A local folder is tracked with ``dvc add``: the md5 of its
    ``.dvc`` file is its pin.
    """

    description: str = ""
    files: list[SourceFile] = Field(default_factory=list)
    base_urls: list[str] = Field(default_factory=list)  # each file at <base><file name>
    path: str | None = None  # a local folder, relative to the project (data/external/<name>)
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}\.dir$")  # its .dvc md5
    how_to_provide: str = ""  # what the error says when the files cannot be had

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if bool(self.files) == (self.path is not None):
            raise ValueError("give either files (published files) or path (a local folder)")
        if self.path is not None and self.md5 is None:
            raise ValueError(
                f"path {self.path}: no pin; give md5, the md5 of {self.path}.dvc "
                "(`dvc add` writes it; `convbench dataset add` copies it here)"
            )
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"files: a file name is listed twice in {names}")
        return self

    def urls_of(self, file: SourceFile) -> tuple[str, ...]:
        """Where ``file`` is published, in the order it is tried (after the mirror)."""
        return (*(base + file.name for base in self.base_urls), *file.urls)

    @property
    def help(self) -> str:
        """How to provide the files by hand, for errors and the comparison's notes."""
        if self.how_to_provide:
            return self.how_to_provide
        if self.path is not None:
            return f"put the images in {self.path} and run `dvc add {self.path}`"
        return (
            f"put {', '.join(f.name for f in self.files)} in a folder and set "
            "CONVBENCH_MIRROR to it (or to a URL prefix that serves the same file names)"
        )
