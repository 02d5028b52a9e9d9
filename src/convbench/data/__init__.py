"""Data: sources and their pins, downloads, archives, the raw readers (idx, CIFAR),
image checks, the manifest and its validation suites, preparation into splits."""
