"""Performance harness: ``python -m benchmarks --backend NAME [--json]``.

Measures one backend on this machine: cold start, execute round trip, host tool callback,
variable binding at several sizes, timeout recovery and peak memory; medians with min and max.
Figures are reported, never asserted: tests do not time things.
"""
