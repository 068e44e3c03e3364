"""Batches of runs: pipeline (train, evaluate and run the notebooks for each) and summary (the
batch's report)."""
