"""Fitting models: the Keras loop with checkpoints, the forest, devices and numerics,
transfer learning's base and features, and what a training writes."""
