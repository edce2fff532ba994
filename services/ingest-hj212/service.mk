# HJ 212 ingest targets. Included from the root Makefile (UV, PY defined there).

INGEST_BENCH_ARGS ?=

.PHONY: bench-ingest test-ingest

bench-ingest: install infra-up ## Ingest + simulator in separate processes: frames/s and ack latency, idle memory, broker outage, standalone buses, frame archive
	$(PY) bench/bench_ingest.py $(INGEST_BENCH_ARGS)

test-ingest: install infra-up ## The ingest service's and the ingest+simulator end-to-end tests
	$(UV) run --frozen pytest tests/services/ingest_hj212 tests/e2e -q
