"""`lab3 bench`: lab3's fast path measured against the pipeline students write."""

from lab3.bench.run import BenchSettings, format_table, run_bench, write_results

__all__ = ["BenchSettings", "format_table", "run_bench", "write_results"]
