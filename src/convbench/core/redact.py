"""Credentials out of anything convbench shows: logs, printed lines, errors, tags.

Connection settings come from the environment (``MLFLOW_TRACKING_URI``,
``CONVBENCH_MIRROR``, ``CONVBENCH_DVC_REMOTE``, a git remote) and may carry a secret in
a URL: its userinfo (``https://user:token@host``) or a query value
(``?token=...``, a presigned URL's ``X-Amz-Signature=...``). :func:`redact` masks both
wherever they appear in a text (a URL, a message, a traceback); the URL stays readable
enough to say which server and file it was.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://userinfo@ : everything up to the last "@" of the authority (a password may hold one).
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#]*@")
# A query (or form) value whose key names a secret: token, api_key, password, X-Amz-Signature...
_SECRET_VALUE = re.compile(
    r"(?P<key>[?&;][^=&\s]*(?:token|key|secret|pass|pwd|sig|auth|credential|session)"
    r"[^=&\s]*=)[^&\s#'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with URL userinfo and secret-looking query values replaced by ``***``."""
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    return _SECRET_VALUE.sub(rf"\g<key>{MASK}", text)


def has_secret(text: str) -> bool:
    """Whether :func:`redact` would hide something in ``text``."""
    return redact(text) != text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then redacts: covers messages, arguments and tracebacks alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
