# xcheck: every target installs what is missing first.
#   make demo   run the shipped scenarios against the default QEMU profile
#   make test   run the test suite (unit + real-QEMU integration)
#   make bench  print performance figures as "name: value" lines
#   make lint   ruff + mypy --strict

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_PKGS = qemu-system-arm gdb-multiarch ninja-build
PYTEST_ARGS ?=

.PHONY: all demo test unit bench lint sysdeps venv clean

all: test

sysdeps:
	@missing=""; \
	command -v qemu-system-aarch64 >/dev/null 2>&1 || missing="$$missing qemu-system-arm"; \
	command -v gdb-multiarch >/dev/null 2>&1 || missing="$$missing gdb-multiarch"; \
	command -v ninja >/dev/null 2>&1 || missing="$$missing ninja-build"; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "xcheck needs Debian packages:$$missing"; \
	    echo "run: sudo apt-get install --no-install-recommends$$missing"; \
	    exit 1; \
	  fi; \
	fi

$(BIN)/xcheck: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: sysdeps $(BIN)/xcheck

demo: venv
	$(BIN)/xcheck doctor
	$(BIN)/xcheck run --jobs 2 scenarios

test: venv testdeps
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

# What the integration tests use beside the default QEMU, when it can be had:
# QEMU 10.0 (matrix and bisection tests), QEMU 11.1, the nested-KVM target, Debian's
# Linux source (the KVM selftest export), and chromium with its chromedriver (the HTML
# report's browser test). Without them
# (no network, not root) those tests are skipped, each saying why.
.PHONY: testdeps
testdeps: venv
	-@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	    || echo "note:$$missing not installed: the HTML report's browser test will be skipped"; \
	elif [ -n "$$missing" ]; then \
	  echo "note: the HTML report's browser test needs:$$missing (sudo apt-get install --no-install-recommends$$missing); it will be skipped"; \
	fi
	-@$(BIN)/python -m xcheck.debfetch qemu || echo "note: QEMU 10.0 not installed: its tests will be skipped"
	-@$(BIN)/python -m xcheck.debfetch qemu --suite $(QEMU11_SUITE) || echo "note: QEMU 11.1 not installed: its tests will be skipped"
	-@$(BIN)/python -m xcheck.target.kvm setup || echo "note: the nested-KVM target is not set up: its tests will be skipped"
	-@$(BIN)/python -m xcheck.debfetch linux-source || echo "note: the Linux source is not fetched: the kvm-selftest export test will be skipped"

unit: venv
	$(BIN)/pytest -q -m "not qemu" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check xcheck tests bench
	$(BIN)/mypy --strict xcheck

clean:
	rm -rf $(VENV) build *.egg-info

# QEMU 10.0 from Debian's bookworm-backports, beside the system QEMU (per-user cache,
# the system's apt configuration untouched); qemu_configs/qemu10.yaml names it.
.PHONY: qemu10
qemu10: venv
	$(BIN)/python -m xcheck.debfetch qemu

# QEMU 11.1 from Debian's trixie-backports, with the libraries of its own suite, run
# through their dynamic loader by a wrapper (per-user cache, the system untouched);
# qemu_configs/qemu11.yaml names it.
QEMU11_SUITE ?= trixie-backports
.PHONY: qemu11
qemu11: venv
	$(BIN)/python -m xcheck.debfetch qemu --suite $(QEMU11_SUITE)

# The nested-KVM target (docs/kvm-target.md): QEMU 10.0, Debian's arm64 kernel and the
# in-guest agent, all in the per-user cache; the cross compiler comes from apt-get.
.PHONY: kvm
kvm: venv
	$(BIN)/python -m xcheck.target.kvm setup
