# Targets of the auth service and gateway (included by the root Makefile).
.PHONY: bench-gateway

bench-gateway: install infra-up ## Gateway: req/s and added p50/p99 vs the service directly, login cost
	$(PY) bench/bench_gateway.py
