# Reporting service targets. Included from the root Makefile (UV, PY defined there).

.PHONY: bench-reporting test-reporting fonts

# PDF reports embed a CJK TrueType font (ecowatt_reporting/reports/fonts.py). `make fonts`
# installs Debian's fonts-wqy-zenhei with apt-get when no usable font is present; pytest
# (and so `make test`) depends on it.
CJK_FONT_PACKAGE ?= fonts-wqy-zenhei

fonts: install ## CJK font for PDF reports (Debian's fonts-wqy-zenhei, apt-get when missing)
	@if $(PY) -m ecowatt_reporting.reports.fonts >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make fonts: no CJK font for PDF reports and no apt-get here: install a TrueType CJK font"; \
		echo "  (e.g. WenQuanYi Zen Hei) and set ECOWATT_REPORTING_CJK_FONT=/path/to/font.ttc"; exit 1; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else \
		echo "make fonts: PDF reports need a CJK font; apt-get needs root. Run:"; \
		echo "  sudo apt-get install -y $(CJK_FONT_PACKAGE)"; \
		echo "  (or set ECOWATT_REPORTING_CJK_FONT=/path/to/a/TrueType CJK font)"; exit 1; \
	fi; \
	echo "make fonts: installing $(CJK_FONT_PACKAGE) for PDF reports"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(CJK_FONT_PACKAGE) >/dev/null && \
	$(PY) -m ecowatt_reporting.reports.fonts

pytest: fonts

bench-reporting: install infra-up fonts ## Reporting: history ingest, curves, monthly city report
	$(PY) bench/bench_reporting.py

test-reporting: install fonts ## The reporting service's test suite (infrastructure must be up)
	$(UV) run --frozen pytest tests/services/reporting -q
