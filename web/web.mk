# The web application (web/): npm ci + vite build when its sources changed, its unit tests,
# Debian's Chromium for the browser tests, and the browser benchmark. Included from the root
# Makefile (UV, PY defined there). Needs Node.js 20+ with npm (README, Prerequisites).

WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
	web/vite.config.ts web/tsconfig.json web/package.json web/package-lock.json
CHROMIUM ?= /usr/bin/chromium

.PHONY: web web-if-possible web-test web-typecheck chromium bench-web ui-screenshots

web/node_modules/.installed: web/package-lock.json web/package.json
	@command -v npm >/dev/null 2>&1 || { echo "The web application needs Node.js 20+ and npm (e.g. apt-get install nodejs npm)."; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npx vite build --logLevel warn
	@touch $@

web: web/dist/index.html ## Build the web application (npm ci + vite build) when its sources changed

# `make run` builds the application when it can; without Node.js the gateway serves its small
# login page instead (and says so here).
web-if-possible:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; \
	else echo "note: Node.js/npm not found: serving without the web application (install Node.js 20+ and run make web)"; fi

web-test: web/node_modules/.installed ## The web application's type check (vue-tsc) and unit tests (vitest)
	cd web && npx vue-tsc --noEmit -p tsconfig.json
	cd web && npx vitest run

web-typecheck: web/node_modules/.installed ## vue-tsc over the web application
	cd web && npx vue-tsc --noEmit -p tsconfig.json

chromium: ## Debian's Chromium for the browser tests (installed with apt-get when missing)
	@if [ -x $(CHROMIUM) ]; then $(CHROMIUM) --version 2>/dev/null || true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests (tests/web) need Debian's Chromium at $(CHROMIUM)."; \
		echo "Install it as root: apt-get install -y chromium (this make could not: no apt-get or not root)."; \
		exit 1; \
	fi

bench-web: install web chromium ## Web: first-load bundle (gzip), overview time to interactive (200 and 3,000 enterprises), frames on live updates
	$(PY) bench/bench_web.py $(WEB_BENCH_ARGS)

ui-screenshots: install web chromium ## Photograph every main page into docs/ui/ (runs the browser tests)
	ECOWATT_SCREENSHOTS_DIR=$(CURDIR)/docs/ui $(UV) run --frozen pytest tests/web -q -p no:cacheprovider
