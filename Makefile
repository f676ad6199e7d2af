# cellfuse: the two commands a newcomer runs are `make demo` and `make test`.
PY := .venv/bin/python
SETUP_STAMP := .venv/.cellfuse-setup

.PHONY: setup demo test test-slow lint bench clean

$(SETUP_STAMP): pyproject.toml tools/setup.sh
	bash tools/setup.sh

setup: $(SETUP_STAMP)

demo: $(SETUP_STAMP)
	$(PY) -m cellfuse run --input data/demo --work work/demo --profile demo

test: $(SETUP_STAMP)
	$(PY) -m pytest -q

bench: $(SETUP_STAMP)
	$(PY) tools/benchmark.py --readme

test-slow: $(SETUP_STAMP)
	$(PY) -m pytest -q -m slow

lint: $(SETUP_STAMP)
	$(PY) -m ruff check cellfuse teachers ensemble student tools tests

clean:
	rm -rf work/demo
