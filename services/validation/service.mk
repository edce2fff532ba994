# Validation service targets. Included from the root Makefile (UV, PY defined there).

.PHONY: bench-validation test-validation

bench-validation: install infra-up ## Validation: readings/s bound through Kafka, day close for 30,000 points
	$(PY) bench/bench_validation.py

test-validation: install ## The validation service's test suite (infrastructure must be up)
	$(UV) run --frozen pytest tests/services/validation -q
