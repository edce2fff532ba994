# HJ 212 codec targets. Included from the root Makefile, which defines UV ?= uv and
# PY = $(UV) run python.

HJ212_FUZZ_RUNS ?= 1000000

.PHONY: fuzz-hj212 bench-codec test-hj212

fuzz-hj212: install ## >= 1,000,000 fuzz inputs through the codec (atheris when installed)
	$(PY) libs/hj212/fuzz/fuzz_hj212.py --runs $(HJ212_FUZZ_RUNS)

bench-codec: install ## Codec decode+verify frames/s and framer MB/s on one core
	$(PY) libs/hj212/bench/bench_codec.py

test-hj212: install ## The codec's test suite (includes a short fuzz run)
	$(UV) run pytest tests/libs/hj212 -q
