"""Benchmark suites, one module each, run by `tools/benchmark.py --suite=NAME`.

Each module defines `run(out_dir: str, preset: str, quick: bool) -> str` that measures, prints
progress, writes its files under `out_dir` and returns a Markdown report.
"""
