"""Inspect one image file: decode it once with Pillow and decide what becomes of it.

An image is ``ok`` (an RGB JPEG, used as it is), ``converted`` (decodable, but another
colour mode or format: re-encoded as an RGB JPEG when the policy allows it) or
``quarantined``, with a reason a person can act on: empty, not an image, truncated,
corrupt, oversized (a decompression bomb is refused before its pixels are decoded), too
small, or a mode the policy does not convert.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

OK, CONVERTED, QUARANTINED = "ok", "converted", "quarantined"
JPEG_MAGIC = b"\xff\xd8"
CONVERTED_QUALITY = 95  # re-encoding is lossy; keep it close to the original


@dataclass(frozen=True)
class ImagePolicy:
    """What an image file must be to be used (from the dataset's ``checks`` in params)."""

    convert_to_rgb: bool = True  # CMYK, grayscale, palette, alpha, non-JPEG -> RGB JPEG
    max_pixels: int = 50_000_000  # refuse larger images before decoding them
    min_side: int = 32


@dataclass(frozen=True)
class ImageCheck:
    """The outcome for one file, and what the manifest records of it."""

    status: str
    reason: str | None = None  # why quarantined
    conversion: str | None = None  # what was converted, e.g. "CMYK -> RGB"
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    content_hash: str | None = None  # of the decoded RGB pixels: equal images, equal hash
    data: bytes | None = None  # the bytes to use: the original, or the RGB re-encode

    @property
    def accepted(self) -> bool:
        return self.status != QUARANTINED


def _quarantine(reason: str, **known: object) -> ImageCheck:
    return ImageCheck(status=QUARANTINED, reason=reason, **known)  # type: ignore[arg-type]


def _pixel_hash(image: Image.Image) -> str:
    digest = hashlib.blake2b(f"{image.size}|{image.mode}|".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.hexdigest()


def _sniff(data: bytes) -> str:
    """Why unreadable bytes are not an image, as specifically as the first bytes tell."""
    if data.startswith(JPEG_MAGIC):
        return "corrupt JPEG: its header cannot be read"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "not an image: unrecognised binary content"
    return "not an image: text content"


def inspect_image(data: bytes, policy: ImagePolicy) -> ImageCheck:
    """Decode ``data`` fully (once) and classify it under ``policy``."""
    if not data:
        return _quarantine("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; the size check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        return _quarantine(f"oversized: {error}")
    except UnidentifiedImageError:
        return _quarantine(_sniff(data))
    with image:
        known = {"format": image.format, "mode": image.mode}
        width, height = image.size
        known |= {"width": width, "height": height}
        if width * height > policy.max_pixels:
            return _quarantine(
                f"oversized: {width}x{height} = {width * height:,} pixels, over the "
                f"{policy.max_pixels:,} allowed (a possible decompression bomb)",
                **known,
            )
        try:
            image.load()
        except OSError as error:
            kind = "truncated" if "truncated" in str(error) else "corrupt image data"
            return _quarantine(f"{kind}: {error}", **known)
        except (SyntaxError, ValueError, EOFError) as error:
            return _quarantine(f"corrupt image data: {error}", **known)
        if min(width, height) < policy.min_side:
            return _quarantine(
                f"too small: {width}x{height}, the shorter side under {policy.min_side}", **known
            )
        if image.format == "JPEG" and image.mode == "RGB":
            return ImageCheck(status=OK, content_hash=_pixel_hash(image), data=data, **known)
        changes = []
        if image.mode != "RGB":
            changes.append(f"{image.mode} -> RGB")
        if image.format != "JPEG":
            changes.append(f"{image.format} -> JPEG")
        conversion = ", ".join(changes)
        if not policy.convert_to_rgb:
            return _quarantine(f"needs conversion ({conversion}), which is switched off", **known)
        rgb = image.convert("RGB")
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=CONVERTED_QUALITY)
        return ImageCheck(
            status=CONVERTED,
            conversion=conversion,
            content_hash=_pixel_hash(rgb),
            data=out.getvalue(),
            **known,
        )
