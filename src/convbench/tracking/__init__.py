"""MLflow: the store and its health, a training's run, abandoned runs, the model registry."""
