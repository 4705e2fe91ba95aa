# The two commands of README.md. Each creates .venv on first use, installs the package into it
# (editable, with the test extras) and runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# pytest exits 5 when it collects no test; that must fail here, as any non-zero code does.
test: $(STAMP)
	$(PY) -m pytest

# The whole job on a generated ImageNet-layout dataset: describe, convert, train, evaluate, export,
# predict (tools/demo.py). Everything goes under demo_output/, which every run starts afresh.
demo: $(STAMP)
	$(PY) -m tools.demo --output_dir=demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
