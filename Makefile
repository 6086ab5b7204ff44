# Benchmarks against the peer tools; see docs/BENCHMARKS.md.
# `make bench` needs a quiet machine and several GiB of disk under ./bench-data.

.PHONY: bench bench-small bench-file bench-s3

# Issues 2, 3 and 4 on the default dataset (about 1.2 GiB of InnoDB data).
bench:
	bash scripts/bench.sh

# The same on a tiny dataset: proves the script works, measures nothing.
bench-small:
	BENCH_PRESET=small bash scripts/bench.sh

# File storage only (issues 2 and 3).
bench-file:
	BENCH_ISSUES="2 3" bash scripts/bench.sh

# S3 only (issue 4), at upload concurrency 1, 4 and 8.
bench-s3:
	BENCH_ISSUES="4" bash scripts/bench.sh

# The scheduler at fleet scale (issue 18): the real ctld against 100, 1,000
# and 10,000 simulated tablets, 10 minutes each; see docs/BENCHMARKS.md.
.PHONY: bench-scale
bench-scale:
	bash scripts/bench-scale.sh
