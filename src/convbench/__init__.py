"""convbench: the MLP vs CNN vs transfer-learning lab as a reproducible MLOps pipeline.

Subpackages follow the data flow, each importing only those before it: ``core`` (atomic
writes, redaction, errors, plots), ``settings``, ``data``, ``inputs``, ``models``,
``training``, ``evaluation``, ``tracking``, ``reporting``, then ``stages`` (one module
per DVC stage) and ``ops`` (servers, workspaces, locks, flow planning).
"""
