# Device simulator targets. Included from the root Makefile (UV, PY defined there).

.PHONY: simulate bench-simulator test-simulator

SIM_TARGET ?= 127.0.0.1:9212
SIM_DEVICES ?= 20
SIM_SPEED ?= 60

simulate: install ## Simulated devices against SIM_TARGET (SIM_DEVICES, SIM_SPEED; Ctrl-C stops)
	$(PY) -m ecowatt_simulator --target $(SIM_TARGET) --synthetic-devices $(SIM_DEVICES) \
		--city-seed 1 --speed $(SIM_SPEED) --stats-every 10

bench-simulator: install ## Simulator frames/s (fast mode, acked) and memory per idle connection
	$(PY) simulator/bench/bench_simulator.py

test-simulator: install ## The simulator's test suite
	$(UV) run pytest tests/simulator -q
