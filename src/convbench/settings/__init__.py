"""Settings: ``params.yaml`` parsed and validated in one place, plus the environment.

``schema`` holds the sections' models, ``params`` the whole file and its checks,
``environment`` what comes from environment variables, ``runs`` each run resolved once
into a frozen :class:`RunSpec`, ``loading`` the :class:`Settings` every stage gets.
This package imports nothing of convbench above ``core``.
"""

from convbench.settings.environment import (
    Environment,
    default_tracking_uri,
    find_project_root,
    keras_backend_variable,
    read_environment,
)
from convbench.settings.loading import Settings, load_settings, requested_runtime
from convbench.settings.params import (
    PROFILE_NAMES,
    KnownNames,
    Params,
    SettingsError,
    VariantInfo,
    image_size,
    load_params,
    parse_params,
    transfer_run_keys,
)
from convbench.settings.runs import RunSpec
from convbench.settings.schema import (
    Augmentation,
    Dataset,
    FileChecks,
    FineTuning,
    Folders,
    ForestRun,
    ImageShape,
    KerasRun,
    Pretrained,
    Profile,
    Registry,
    Runtime,
    Source,
    SourceFile,
    Training,
    Transfer,
)

__all__ = [
    "PROFILE_NAMES",
    "Augmentation",
    "Dataset",
    "Environment",
    "FileChecks",
    "FineTuning",
    "Folders",
    "ForestRun",
    "ImageShape",
    "KerasRun",
    "KnownNames",
    "Params",
    "Pretrained",
    "Profile",
    "Registry",
    "RunSpec",
    "Runtime",
    "Settings",
    "SettingsError",
    "Source",
    "SourceFile",
    "Training",
    "Transfer",
    "VariantInfo",
    "default_tracking_uri",
    "find_project_root",
    "image_size",
    "keras_backend_variable",
    "load_params",
    "load_settings",
    "parse_params",
    "read_environment",
    "requested_runtime",
    "transfer_run_keys",
]
