# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when missing and
# install the pinned stack once (the stamp file makes a second run install nothing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spikeport-installed
# torch 2.14.1 / torchvision 0.29.1 lie on the local disk (DESIGN.md); pip also finds them through the
# machine's index configuration, this makes the location explicit.
WHEELS ?= /opt/pypi-more/files
FIND_LINKS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS),)
OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: install demo data test test-all bench clean

install: $(STAMP)

$(STAMP): requirements/stack.txt requirements/lava.txt requirements/test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -r requirements/stack.txt
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -r requirements/lava.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spikeport demo --out $(OUT)

# MNIST and Fashion-MNIST into the cache ($$SPIKEPORT_CACHE, else ~/.cache/spikeport), once
data: $(STAMP)
	$(BIN)/spikeport fetch all

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q --run-slow $(PYTEST_ARGS)

BENCHMARKS ?= methods_digits quantize_digits training_cost speed_reference event_driven scaling_reference speed_lava lava_stock lavadl_networks deploy_networks speed_mnist lava_mnist

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/bench.txt
	for b in $(BENCHMARKS); do $(BIN)/python -m benchmarks.$$b || exit 1; done

clean:
	rm -rf $(VENV) out
