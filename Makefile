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

# The nets, then a small ImageNet-layout dataset (archives, with broken files planted) converted
# to TFRecords. Everything goes under demo_output/, which a rerun starts afresh.
demo: $(STAMP)
	$(VENV)/bin/vgg-describe
	rm -rf demo_output
	$(PY) -m tools.generate_images --output_dir=demo_output/raw --layout=archives
	$(VENV)/bin/vgg-convert --raw_data_dir=demo_output/raw --output_dir=demo_output/data \
		--train_shards=4 --validation_shards=2

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
