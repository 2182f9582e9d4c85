"""Pieces of the Softy Pinko benchmark harness (benches/run.py tells the story).

Layout:
- procs.py    starting, watching and stopping the servers; CPU and memory from /proc
- configs.py  the lb, nginx and HAProxy configs, equivalent to each other
- load.py     one bounded oha run, parsed from its JSON output
- stats.py    medians, min-max and ratios over rounds
- report.py   the Markdown results table
- chart.py    the SVG chart, written by hand (no plotting dependency)
- machine.py  what the results were measured on (CPU, kernel, versions, load)

Standard library only: CI runs the smoke mode on a fresh machine without pip.
"""
