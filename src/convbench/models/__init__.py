"""Model variants: small builder functions registered by name.

``catalog`` is the registry, ``networks``/``vgg16``/``forest`` the builders, ``variants``
the complete catalogue, ``saving`` how trained models are written and loaded (Keras in
safe mode, forests through skops).
"""
