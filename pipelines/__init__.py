"""One thin entry point per DVC stage: parse arguments, call convbench, nothing else."""
