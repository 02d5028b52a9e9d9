"""Model variants: small builder functions registered by name.

``catalog`` is the registry, ``networks``/``bases``/``forest`` the builders, ``variants``
the complete catalogue, ``saving`` how trained models are written and loaded (Keras in
safe mode, forests through skops).
"""
