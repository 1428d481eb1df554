"""Speed benchmarks: each compares the project's code path with a baseline measured in the same run.

Run from the repository root: `python -m bench.train_speed`, `python -m bench.tracking_overhead`,
`python -m bench.fid_speed` (see bench/README.md).
"""
