# Targets of the registry service (included by the root Makefile).
.PHONY: bench-registry

bench-registry: install infra-up ## Registry: import 3,000 enterprises (~30,000 points), list-endpoint p95
	$(PY) bench/bench_registry.py
