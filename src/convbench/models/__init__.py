"""Model variants: small builder functions registered by name in :mod:`.catalog`.

Importing this package registers every builder (``networks``, ``vgg16``, ``forest``);
``saving`` writes and loads trained models (Keras in safe mode, forests through skops).
"""

from convbench.models import forest, networks, vgg16  # noqa: F401  (they register themselves)
from convbench.models.catalog import VARIANTS, Variant, build_variant

__all__ = ["VARIANTS", "Variant", "build_variant"]
