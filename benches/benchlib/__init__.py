"""Pieces of the Softy Pinko benchmark harness (benches/run.py tells the story).

Layout:
- procs.py    starting, watching and stopping the servers; CPU and memory from /proc
- configs.py  the lb, nginx and HAProxy configs, equivalent to each other
- load.py     one bounded oha (or h2load, or handshake_load.py) run, parsed into the same figures
- tls.py      the bench certificate (openssl) and the probe of what a TLS listener negotiates
- handshake_load.py  the full-TLS-handshake-per-request client (never resumes; runs as a script)
- stats.py    medians, min-max and ratios over rounds
- report.py   the Markdown results table
- chart.py    the SVG chart, written by hand (no plotting dependency)
- machine.py  what the results were measured on (CPU, kernel, versions, load)

Standard library only: CI runs the smoke mode on a fresh machine without pip.
"""
