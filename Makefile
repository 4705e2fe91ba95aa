# The two commands of README.md. Each creates .venv on first use, installs the package into it
# (editable, with the test extras) and runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast demo lint clean

# The installed packages are compiled on every core (pip compiles one file at a time: a minute
# of TensorFlow's, JAX's and OpenVINO's files); their .pyc files serve every later import, also
# where PYTHONDONTWRITEBYTECODE keeps Python from writing them itself.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	$(PY) -m compileall -q -j 0 $(VENV)/lib
	touch $(STAMP)

# The whole suite on TEST_WORKERS pytest-xdist workers, a test module at a time on each (a
# module's fixtures are built once); budget: 12 minutes on 2 cores, install included (BUILD.md,
# "Tests").
# pytest exits 5 when it collects no test; that must fail here, as any non-zero code does.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tests only (no subprocess, no training, no full-size net): the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The whole job on a generated ImageNet-layout dataset: describe, convert, train, evaluate, export,
# predict (tools/demo.py). Everything goes under demo_output/, which every run starts afresh.
demo: $(STAMP)
	$(PY) -m tools.demo --output_dir=demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
