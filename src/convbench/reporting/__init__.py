"""The comparison of every run: table, charts, notes on what did not run."""
