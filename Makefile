# `make run` and `make test` install whatever is missing first, so both work on a fresh Debian 12.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Debian's bcc bindings exist only for the system interpreter.
SYSTEM_PYTHON := /usr/bin/python3
# systemd (systemd-analyze) and ca-certificates: tests/deploy checks the unit and the image packages;
# liburing-dev: the io_uring tests build a liburing program.
DEB_PACKAGES := python3-bpfcc python3-venv linux-headers-amd64 gcc make util-linux mount runc busybox-static \
	systemd ca-certificates liburing-dev
RULES ?= rules/
ARGS ?=

.PHONY: run test lint bench system-deps venv clean

# `make run RULES=` runs without rules: every file event on the host is printed.
run: venv
	$(PY) -m otel_fim run $(if $(RULES),--rules $(RULES)) --output console $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

# Style and types; .ci/run runs this before the tests.
lint: venv
	$(VENV)/bin/ruff check otel_fim plugins tests bench examples
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m bench.bench_rules
	$(PY) -m bench.kernel_filter $(ARGS)

system-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: system-deps $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info
