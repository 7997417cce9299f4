# planctond developer entry points. Everything runs as root on Debian 12 (see README.md).
#
#   make setup   Debian packages + dev venv, a running Docker engine, the busybox image
#   make run     setup, then the daemon in the foreground on its default config
#   make lint    ruff, ruff format --check, mypy (strict), import-linter contracts
#   make test    the test suite (starts its own private dockerd)
#   make check   what CI runs: deps, lint, test, the owner bench's short mode, the v2 guest, timed
#   make bench   the benchmarks (root, about 12 minutes): results in bench/RESULTS.md
#   make guest-test   only the tests in a booted cgroup v2 guest (QEMU, 12-16 min here)
#   make guest-image  build the cached guest image ahead of time (Debian packages, a few minutes)
#   make bench-fleet  simulated hosts into influxd and VictoriaMetrics (~25 min): bench/RESULTS.md
#   make bench-owner  owner impact against harvest, every contender (~18 min): bench/RESULTS.md
#   make bench-owner-short  the same as a 3-minute smoke test, into /tmp/planctond-bench-owner-short
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
DEVSTACK := contrib/devstack
PHASE := $(DEVSTACK)/phase.sh
# Per-test limit (pytest-timeout): the slowest tests wait minutes for owner grace periods.
PYTEST_TIMEOUT ?= 900
PYTEST_ARGS ?=
# Extra daemon flags for `make run`, e.g. RUN_ARGS="--config contrib/workqueue/config.yaml".
RUN_ARGS ?=

.PHONY: help deps dockerd images setup run lint test check venv-ok bench guest-test guest-image

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

deps:
	$(DEVSTACK)/deps.sh

dockerd:
	$(DEVSTACK)/dockerd.sh start

images: dockerd
	$(DEVSTACK)/images.sh busybox

setup: deps
	$(MAKE) --no-print-directory images

run: setup
	$(PY) -m planctond.cli.daemon --foreground $(RUN_ARGS)

venv-ok:
	@test -x $(PY) || { echo "no $(VENV): run contrib/devstack/deps.sh (or make setup) first" >&2; exit 1; }

lint: venv-ok
	$(VENV)/bin/ruff check planctond tests bench
	$(VENV)/bin/ruff format --check planctond tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --explicit-package-bases bench
	$(VENV)/bin/lint-imports

# pytest's exit 5 ("no tests collected") is a failure here, like every other non-zero exit.
# The cgroup v2 guest (tests/guest/, marker `guest`) has a phase of its own in `check`: one boot.
TEST_MARKS ?= not guest
test: venv-ok
	@rc=0; $(PY) -m pytest -p no:cacheprovider --timeout=$(PYTEST_TIMEOUT) -m "$(TEST_MARKS)" $(PYTEST_ARGS) tests || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; exit $$rc

# Lint and tests both run even if one fails (one CI run shows every problem); any failure fails.
check:
	@$(PHASE) deps $(DEVSTACK)/deps.sh
	@rc=0; \
	$(PHASE) lint $(MAKE) --no-print-directory lint || rc=1; \
	$(PHASE) test $(MAKE) --no-print-directory test || rc=1; \
	$(PHASE) bench-owner $(MAKE) --no-print-directory bench-owner-short || rc=1; \
	$(PHASE) guest $(MAKE) --no-print-directory guest-test || rc=1; \
	exit $$rc

# cgroup v2 with both Docker drivers, for real: one emulated Debian 12 boot (tests/guest/), the
# image built first if its inputs changed. `make test` leaves it out; `make check` (CI) runs it.
guest-test:
	@$(MAKE) --no-print-directory test TEST_MARKS=guest

guest-image:
	contrib/guest/build-image.sh

# The supervisor benchmark, then the idle-cgroup one; each rewrites its own section of RESULTS.md.
bench:
	/usr/bin/python3 bench/run.py
	/usr/bin/python3 bench/idle_cgroup.py

# Fleet scale: 100 and 1,000 simulated hosts into a private influxd and VictoriaMetrics.
.PHONY: bench-fleet
bench-fleet:
	/usr/bin/python3 -m bench.fleet

# Owner impact against harvest (issue 12): every contender on the same owner trace, ~18 min on 2
# cores; takes a memory ballast, so run it on a machine nobody else uses. The short mode (< 3 min,
# no ballast) writes to /tmp/planctond-bench-owner-short/ and leaves bench/ alone.
.PHONY: bench-owner bench-owner-short
bench-owner:
	/usr/bin/python3 -m bench.owner

bench-owner-short:
	/usr/bin/python3 -m bench.owner --short

# ----- packaging: deb and rpm targets go here (owned by the packaging work) ----------------------
.PHONY: deb rpm
# Built from the tracked files of this checkout into dist/; the version is planctond/__init__.py's.
deb:
	packaging/build-deb.sh

rpm:
	packaging/build-rpm.sh
