"""Stage ``download_weights``: a pretrained base's weights, verified against their pin."""

from __future__ import annotations

from pathlib import Path

from convbench.data.download import fetch_source
from convbench.settings import Settings
from convbench.stages.entry import stage_command


def download_weights(settings: Settings, name: str, out_dir: Path) -> list[Path]:
    """Fetch the pretrained weights ``pretrained.<name>`` names, verified against their pin."""
    if name not in settings.params.pretrained:
        raise KeyError(
            f"pretrained: unknown {name!r}; allowed: {sorted(settings.params.pretrained)}"
        )
    source = settings.params.pretrained[name].source
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_source(source, out_dir, mirror=settings.env.mirror, name=name)


main = stage_command(download_weights)
