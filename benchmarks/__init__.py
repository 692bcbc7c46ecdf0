"""The project's benchmarks: `scripts/benchmark` (or `.venv/bin/python -m benchmarks`).

Each benchmark is a module with `add_arguments(parser)` and `run(args) -> dict` registered in
BENCHMARKS (benchmarks/__main__.py); its figures are printed as a table and written as JSON to
build/benchmarks/<name>.json. Figures are measured when the command runs, never asserted in
tests (this machine is shared and noisy: each figure is a median of repeated runs).
"""
