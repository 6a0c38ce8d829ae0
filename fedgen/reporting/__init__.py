"""Sweep summaries, attack logs, the leakage report and `fedgen compare`."""
