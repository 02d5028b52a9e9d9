"""Infrastructure around the pipeline: the local servers and workers, checkouts for
fanned-out runs, the run lock, and planning which stages a flow runs."""
