"""Validating an image manifest with a Great Expectations (1.x) suite, and its Data Docs.

``expectations``: what a dataset must be (from its params); ``suite``: the GX suite built
from that; ``checkpoint``: running it (:func:`validate_manifest`, the entry point) and
writing Data Docs; ``summary`` and ``failure``: what a run reports, and its error.
"""
