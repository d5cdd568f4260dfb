"""The benchmark harness for `make bench` (see bench/run.py)."""
