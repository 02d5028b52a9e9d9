"""Great Expectations imported quietly, and an in-memory context with one Data Docs site.

GX is imported on first use (the import alone takes seconds), with its usage statistics
switched off before the import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

DOCS_SITE = "convbench"


def import_gx() -> Any:
    """great_expectations, imported with analytics off and its logging quietened."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def docs_context(gx: Any, site_dir: Path) -> Any:
    """An in-memory context: no analytics, no progress bars, one Data Docs site."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.config.analytics_enabled = False
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # The ephemeral context comes with a "local_site" in a fresh temporary folder; the
    # report belongs in site_dir instead.
    for name in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(name)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def site_page(context: Any, identifier: Any, site_dir: Path) -> str | None:
    """This run's validation page, relative to the site folder (None if not found)."""
    try:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=DOCS_SITE)
        url = urls[0]["site_url"]
        page = Path(unquote(urlparse(url).path)).resolve()
        return page.relative_to(site_dir.resolve()).as_posix()
    except Exception:  # a nicety: the index page links to it anyway
        log.debug("could not locate the validation page", exc_info=True)
        return None
