"""Every model variant, registered: import ``VARIANTS`` and ``build_variant`` from here.

The builders register themselves in :mod:`.catalog` when their module is imported; this
module imports them all, so the catalogue it hands out is complete.
"""

from convbench.models import bases, forest, networks  # noqa: F401  (they register themselves)
from convbench.models.catalog import VARIANTS, Variant, build_variant

__all__ = ["VARIANTS", "Variant", "build_variant"]
