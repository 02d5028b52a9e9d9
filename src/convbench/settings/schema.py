"""The schema of ``params.yaml``: one strict, frozen model per section.

Unknown keys and wrong types fail validation; :mod:`convbench.settings.params` turns the
failure into a message naming the key. Variant names are checked there too, against
the catalogue handed in by the layer that owns it. Sources have their own module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from convbench.settings.sources import Source, SourceFile
from convbench.settings.strict import Strict


class Profile(Strict):
    """How far a profile scales the decks' settings down (``null`` = not at all)."""

    description: str
    max_epochs: int | None = Field(default=None, ge=1)
    train_limit: int | None = Field(default=None, ge=1)
    validation_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)
    max_estimators: int | None = Field(default=None, ge=1)
    # Longest side of resized colour images (folder datasets); null keeps the dataset's.
    image_size: int | None = Field(default=None, ge=8)


class ImageShape(Strict):
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]


class Folders(Strict):
    """Where a folder dataset's images sit inside its archive."""

    root: str = ""  # the folder holding the split (or class) folders; "": the top
    split_folders: bool  # root/<split>/<class>/<file>, or root/<class>/<file> (one split, "all")


class FileChecks(Strict):
    """What validation accepts of a folder dataset's image files."""

    convert_to_rgb: bool = True  # CMYK, grayscale, palette, alpha: convert, or quarantine
    max_pixels: int = Field(default=50_000_000, ge=1)  # larger images are refused undecoded
    min_side: int = Field(default=32, ge=1)
    max_bad_fraction: float = Field(default=0.02, ge=0, le=1)  # more fails the stage
    min_class_ratio: float = Field(default=0.8, ge=0, le=1)  # smallest / largest class
    # Images (by decoded pixels) filed under two or more classes; more fails the stage.
    # Their files are quarantined either way (and so count as bad files too).
    max_label_conflicts: int = Field(default=0, ge=0)


class Dataset(Strict):
    source: Source
    # idx: images and labels files per split (MNIST's format, gzipped or not); npz: one
    # .npz of x_train, y_train, x_test, y_test (keras.datasets' mnist.npz);
    # cifar10_python: CIFAR-10's pickled batches; image_folders: class folders of image
    # files, in an archive or a local folder (Cats vs Dogs).
    format: Literal["idx", "npz", "cifar10_python", "image_folders"]
    classes: list[int | str] = Field(min_length=2)
    # The images as stored (idx, cifar10_python), or the size they are resized to.
    image: ImageShape
    split_counts: dict[str, int] | None = None  # what validation expects of the source
    # Which published split plays each role; a role with no split is carved, seeded and
    # stratified, out of the training split by its fraction.
    train_split: str = "train"
    validation_split: str | None = None
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)
    test_split: str | None = "test"
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    folders: Folders | None = None
    checks: FileChecks | None = None
    shard_size: int = Field(default=1000, ge=1)  # images per TFRecord shard (folder datasets)

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        for role in ("validation", "test"):
            split, fraction = getattr(self, f"{role}_split"), getattr(self, f"{role}_fraction")
            if (split is None) == (fraction is None):
                raise ValueError(f"give exactly one of {role}_split and {role}_fraction")
        if (self.format == "image_folders") != (self.folders is not None):
            raise ValueError("folders: required for format image_folders, and only for it")
        if self.checks is not None and self.format != "image_folders":
            raise ValueError("checks: only for format image_folders")
        if self.source.path is not None and self.format != "image_folders":
            raise ValueError("source.path: a local folder is read as format image_folders")
        if self.format == "idx":
            _check_idx_files(self.source.files)
        elif self.source.files and len(self.source.files) != 1:
            raise ValueError(f"source.files: format {self.format} takes exactly one file")
        if len({str(c) for c in self.classes}) != len(self.classes):
            raise ValueError(f"classes: a class is listed twice in {self.classes}")
        return self

    @property
    def file_checks(self) -> FileChecks:
        return self.checks or FileChecks()


def _check_idx_files(files: list[SourceFile]) -> None:
    """Every idx file says its split and what it holds; each split has both."""
    seen: dict[str, list[str]] = {}
    for index, file in enumerate(files):
        if file.split is None or file.holds is None:
            raise ValueError(
                f"source.files.{index} ({file.name}): an idx file needs split (train, "
                "test, ...) and holds (images or labels)"
            )
        seen.setdefault(file.split, []).append(file.holds)
    for split, holds in seen.items():
        if sorted(holds) != ["images", "labels"]:
            raise ValueError(
                f"source.files: split {split!r} needs one images and one labels file; "
                f"has {sorted(holds)}"
            )


class EarlyStopping(Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(default=3, ge=0)
    restore_best_weights: bool = True


class Augmentation(Strict):
    """Random transforms of training batches, as ImageDataGenerator's arguments mean them."""

    rotation: float = Field(default=0.0, ge=0, le=180)  # degrees, either way
    width_shift: float = Field(default=0.0, ge=0, lt=1)  # fraction of the width
    height_shift: float = Field(default=0.0, ge=0, lt=1)  # fraction of the height
    shear: float = Field(default=0.0, ge=0, lt=90)  # degrees (ImageDataGenerator's unit)
    zoom: float = Field(default=0.0, ge=0, lt=1)  # each axis scaled by 1 +- zoom
    horizontal_flip: bool = False
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"


class Training(Strict):
    """How a Keras model is fitted."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop", "adadelta"] = "adam"
    learning_rate: float = Field(default=0.001, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)  # sgd and rmsprop only
    # Evaluate an exponential moving average of the weights (Keras' `use_ema`): smooths
    # the epoch-to-epoch swings of small, augmented data sets. None: the last weights.
    ema_momentum: float | None = Field(default=None, gt=0, lt=1)
    early_stopping: EarlyStopping | None = None


class KerasRun(Training):
    """A Keras variant trained on one dataset's images (the decks' settings by default)."""

    dataset: str
    variant: str
    normalize: bool = True  # pixels /255 or raw 0-255: the decks' on/off experiment
    augmentation: Augmentation | None = None  # training batches only


class FineTuning(Training):
    """The second step of transfer learning: the base's last block trained with the head."""

    augmentation: Augmentation | None = None
    # This layer of the base (or the first whose name starts with it: a block) and those
    # after it train; None: the base's own `trainable_from`.
    trainable_from: str | None = None


class Transfer(Strict):
    """Transfer learning on one dataset: features once, a head on them, then fine-tuning.

    Makes two runs: ``<key>_features`` (variant ``<architecture>_features``, the head
    trained on the stored features) and ``<key>_finetune`` (``<architecture>_finetune``).
    """

    dataset: str
    base: str  # a key of `pretrained`
    feature_batch_size: int = Field(default=20, ge=1)  # the one pass of the frozen base
    # base: the base's own preprocess_input (inside the model); rescale: pixels /255 (as
    # the decks feed VGG16).
    preprocess: Literal["base", "rescale"]
    head: Training
    finetune: FineTuning


class Pretrained(Strict):
    """A pretrained convolutional base: a Keras application and its no-top weights file.

    Its runs are named after the application: ``vgg16_features``, ``resnet50_finetune``.
    """

    application: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")  # keras.applications.<it>
    source: Source  # the no-top weights file, pinned by the hash Keras publishes for it
    # The mode of its keras.applications preprocess_input: caffe (BGR, ImageNet means
    # subtracted), tf (to [-1, 1]), torch (to [0, 1], then ImageNet mean and std), none
    # (the model rescales itself: EfficientNet).
    preprocess: Literal["caffe", "tf", "torch", "none"]
    # Fine-tuning trains this layer (or the first whose name starts with it: a block)
    # and every layer after it.
    trainable_from: str

    @model_validator(mode="after")
    def _one_weights_file(self) -> Pretrained:
        if len(self.source.files) != 1:
            raise ValueError("source: a base takes exactly one file, its no-top weights")
        return self

    @property
    def architecture(self) -> str:
        return self.application.lower()


class ForestRun(Strict):
    """The scikit-learn random-forest baseline on flattened pixels."""

    dataset: str
    variant: Literal["random_forest"]
    n_estimators: int = Field(ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    normalize: bool = True


def _run_kind(value: Any) -> str:
    variant = value.get("variant") if isinstance(value, dict) else getattr(value, "variant", None)
    return "forest" if variant == "random_forest" else "keras"


# The variant decides the run's schema, so errors name the run's own keys only.
Run = Annotated[
    Annotated[KerasRun, Tag("keras")] | Annotated[ForestRun, Tag("forest")],
    Discriminator(_run_kind),
]
_UNION_TAGS = {"keras", "forest"}


class Runtime(Strict):
    """How training uses the machine it lands on; the GPU-only knobs are ignored on CPUs.

    One params file serves a mixed fleet: GPU runners apply mixed precision and XLA,
    CPU runners train in float32 as before.
    """

    device: Literal["auto", "cpu", "gpu"] = "auto"  # gpu: fail when none is visible
    memory_growth: bool = True  # take GPU memory as needed, not all of it at start
    # Keras' backend for training and scoring; the same models, other kernels.
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    # auto: bf16 on CPUs with native bf16 (AMX, AVX512_BF16), where it is faster at the same
    # accuracy; float32 elsewhere. bf16 | fp16: on GPUs. none: float32 everywhere.
    mixed_precision: Literal["auto", "none", "bf16", "fp16"] = "auto"
    xla: Literal["auto"] | bool = "auto"  # Keras' jit_compile; auto: XLA on GPUs only
    # TensorFlow's op determinism: the same numbers on every rerun on GPUs too (on CPUs
    # the seeded runs already repeat exactly). Keras runs no XLA under it: GPU speed.
    deterministic: bool = True
    # Independent stages the experiment flow runs at once. auto: one per core plus one, at
    # most one per 4 GiB of memory; Keras fits one per 8 cores (each uses every core).
    stages_at_once: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    # The flow's stage commands fork from one interpreter that imported the libraries once
    # (Linux): the same work without 5-9 s of imports per stage. Not a dep: same numbers.
    warm_stages: bool = True

    @model_validator(mode="after")
    def _xla_needs_nondeterminism(self) -> Runtime:
        if self.deterministic and self.xla is True:
            raise ValueError(
                "xla: true needs deterministic: false (Keras compiles no XLA under "
                "TensorFlow's op determinism)"
            )
        return self


class Registry(Strict):
    """The MLflow model registry gate: who may hold the alias (``champion``)."""

    alias: str = Field(default="champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    # Per dataset; a best run below its minimum is registered but never promoted.
    min_test_accuracy: dict[str, float] = Field(default_factory=dict)
