"""What the benchmark scripts share: statistics (one percentile), the load generator, server
processes, /proc probes, the machine's description and report formatting.

The scripts run as ``python benchmarks/NAME.py``, so Python puts ``benchmarks/`` first on the
import path and ``import harness`` needs no path edits."""
