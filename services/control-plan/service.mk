# Control-plan service targets. Included from the root Makefile, which defines UV and PY.

LEVEL ?= orange
HOURS ?= 8
RAMP ?=
CONTROL_PLAN_BENCH_ARGS ?=

.PHONY: alert alert-status bench-control-plan test-control-plan

alert: install ## Launch an alert on the running platform (LEVEL=orange HOURS=8 RAMP=20; make run first)
	$(PY) -m ecowatt_control_plan.cli launch --level $(LEVEL) --hours $(HOURS) $(if $(RAMP),--ramp $(RAMP))

alert-status: install ## Enterprise statuses of the latest judged hour (make run first)
	$(PY) -m ecowatt_control_plan.cli status

bench-control-plan: install infra-up ## Control plan: hourly compliance pass (3,000 enterprises / 30,000 points), red-alert decomposition
	$(PY) bench/bench_control_plan.py $(CONTROL_PLAN_BENCH_ARGS)

test-control-plan: install infra-up ## The control-plan service's tests and its pipeline test (real Kafka, PostgreSQL, Redis)
	$(UV) run --frozen pytest tests/services/control_plan tests/pipeline/test_control_plan.py -q
