"""The registry of real data sources: every file convbench downloads, with its pins.

A file is trusted only once its sha256 matches the pin here; the URLs are tried in
order after the mirror (``CONVBENCH_MIRROR``), which holds the same file names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    """One published file: its name (also its name in a mirror), pins and download URLs."""

    name: str
    sha256: str
    urls: tuple[str, ...]
    size: int | None = None
    md5: str | None = None  # the checksum the publisher gives, kept for reference


@dataclass(frozen=True)
class Source:
    """A data set or weights file as it is published: one or more files."""

    name: str
    description: str
    files: tuple[SourceFile, ...]
    how_to_provide: str


def _mirrored(name: str, sha256: str, size: int, md5: str, bases: tuple[str, ...]) -> SourceFile:
    return SourceFile(
        name=name, sha256=sha256, size=size, md5=md5, urls=tuple(b + name for b in bases)
    )


# The mirrors TensorFlow (cvdf) and PyTorch (ossci) download from, then the original site.
MNIST_BASES = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MNIST = Source(
    name="mnist",
    description="MNIST handwritten digits, the four original idx files (LeCun, Cortes, Burges)",
    files=(
        _mirrored(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            MNIST_BASES,
        ),
        _mirrored(
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
            "d53e105ee54ea40749a09fcbcd1e9432",
            MNIST_BASES,
        ),
        _mirrored(
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
            "9fb629c4189551a2d022fa330f9573f3",
            MNIST_BASES,
        ),
        _mirrored(
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
            "ec29112dd5afa0611ce80d1b7f02629c",
            MNIST_BASES,
        ),
    ),
    how_to_provide=(
        "put the four MNIST idx .gz files in a folder and set CONVBENCH_MIRROR to it "
        "(or to a URL prefix serving them)"
    ),
)

SOURCES: dict[str, Source] = {source.name: source for source in (MNIST,)}
