"""Batches of runs: pipeline (train, evaluate and run the notebooks for each) and the batch's
report: summary (its files), report_page (its content), render (HTML from templates/, Markdown)."""
