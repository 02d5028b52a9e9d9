"""One module per DVC stage, named like the stage: the function flows and tests call,
and the ``main`` its ``pipelines/`` entry point runs."""
