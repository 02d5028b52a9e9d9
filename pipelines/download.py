"""DVC stage `download`: fetch a dataset's source files, verified, into a folder."""

from convbench.stages import download
from convbench.stages.entry import run_stage

if __name__ == "__main__":
    run_stage(download.main)
