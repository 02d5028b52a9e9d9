"""The registry of real data sources: every file convbench downloads, with its pins.

A file is trusted only once it matches its pin here: its sha256, or, where the publisher
gives only an md5, that md5; an archive with no published checksum at all is pinned by
a fingerprint of its members' contents (see :func:`convbench.data.archives.content_fingerprint`),
which a faithful repack keeps. The URLs are tried in order after the mirror
(``CONVBENCH_MIRROR``), which holds the same file names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    """One published file: its name (also its name in a mirror), pins and download URLs.

    At least one pin is required; every pin given is checked.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    content_sha256: str | None = None  # archives: fingerprint of the members' contents
    # Bytes of every valid copy: tells a transfer cut short from a complete one where the
    # server sends no Content-Length. None where a repack is fine (a content pin only).
    size: int | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5 or self.content_sha256):
            raise ValueError(f"{self.name}: a source file needs a sha256, md5 or content pin")


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


def _mirror_help(*names: str) -> str:
    return (
        f"put {', '.join(names)} in a folder and set CONVBENCH_MIRROR to it "
        "(or to a URL prefix that serves the same file names)"
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
    how_to_provide=_mirror_help("the four MNIST idx .gz files"),
)

# No checksum is published for this zip; the official file (68,606,236 bytes) and
# faithful repacks share this fingerprint of their 3,001 members (3,000 JPEGs and the
# vectorize.py the archive ships with). It equals the sha256 of the member listing in
# `sha256sum` format, sorted by path, so `sha256sum` can check it by hand.
CATS_AND_DOGS_FILTERED = Source(
    name="cats_and_dogs_filtered",
    description="Cats vs Dogs, the 2,000 + 1,000 image subset of the Keras blog",
    files=(
        SourceFile(
            name="cats_and_dogs_filtered.zip",
            content_sha256="e5ad00a6c6845f0daba89c57a2aec8046cececd3323c72c11e3a44c344738f18",
            urls=("https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",),
        ),
    ),
    how_to_provide=_mirror_help("cats_and_dogs_filtered.zip"),
)

# The release TensorFlow Datasets pins (size and sha256 from its url_checksums). Microsoft
# now also serves kagglecatsanddogs_5340.zip, for which no checksum is published.
KAGGLE_CATS_AND_DOGS = Source(
    name="kaggle_cats_and_dogs",
    description="Cats vs Dogs, the full Kaggle/Asirra set (25,000 images, some corrupt)",
    files=(
        SourceFile(
            name="kagglecatsanddogs_3367a.zip",
            sha256="f9553e426bd725354ed3a27e3c6920caadb55c835d1ebd880d2e56d3f1fbb22b",
            size=824_894_548,
            urls=(
                "https://download.microsoft.com/download/3/E/1/"
                "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_3367a.zip",
            ),
        ),
    ),
    how_to_provide=_mirror_help("kagglecatsanddogs_3367a.zip (824,894,548 bytes)"),
)

CIFAR10 = Source(
    name="cifar10",
    description="CIFAR-10, the python version (Krizhevsky, 2009)",
    files=(
        SourceFile(
            name="cifar-10-python.tar.gz",
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            md5="c58f30108f718f92721af3b95e74349a",
            size=170_498_071,
            urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        ),
    ),
    how_to_provide=_mirror_help("cifar-10-python.tar.gz"),
)

# Keras publishes only the md5 (the file_hash keras.applications.VGG16 checks).
VGG16_IMAGENET_NOTOP = Source(
    name="vgg16_imagenet_notop",
    description="VGG16 ImageNet weights without the classifier (Keras applications)",
    files=(
        SourceFile(
            name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            md5="6d6bbae143d832006294945121d1f1fc",
            size=58_889_256,
            urls=(
                "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ),
        ),
    ),
    how_to_provide=_mirror_help("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
)

SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        MNIST,
        CATS_AND_DOGS_FILTERED,
        KAGGLE_CATS_AND_DOGS,
        CIFAR10,
        VGG16_IMAGENET_NOTOP,
    )
}
