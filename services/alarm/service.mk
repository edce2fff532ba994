# Alarm service targets. Included from the root Makefile, which defines UV and PY.

ALARM_BENCH_ARGS ?=

.PHONY: bench-alarm test-alarm

bench-alarm: install infra-up ## Alarm: readings/s of one process, PointReading→alarms, and frame→alarms end to end under load
	$(PY) bench/bench_alarm.py $(ALARM_BENCH_ARGS)

test-alarm: install infra-up ## The alarm service's tests (real Kafka, PostgreSQL, Redis)
	$(UV) run --frozen pytest tests/services/alarm -q
