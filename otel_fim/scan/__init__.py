"""Baseline and scans: what changed in watched files while the sensor could not see it.

The sensor reports changes as they happen, but only while it runs and only what reaches user
space. A persistent baseline of the watched files (`baseline.py`) lets a scan (`scanner.py`)
compare the disk with what the agent last knew: at start-up (changes made while the agent was
down), after the kernel lost events (a coverage gap) and, optionally, periodically. Findings are
turned into events (`findings.py`) and evaluated by the same rules as live events; `service.py`
runs it all on one thread that owns the baseline.
"""
