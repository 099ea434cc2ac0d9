# monosemrec — the two commands of the README, and a few helpers.
PYTHON ?= python3

.PHONY: setup test lint reports smoke-reports clean-reports retrain promote

setup:  ## install the pinned runtime and test requirements
	$(PYTHON) -m pip install -q -r requirements-dev.txt

lint: setup
	$(PYTHON) -m ruff check notebooks tests scripts

test: lint  ## set up, lint, and run the whole test suite (what CI runs)
	$(PYTHON) -m pytest -q -ra

reports: setup  ## the main job: execute the report notebooks on the pretrained models -> reports/*.html
	$(PYTHON) scripts/run_notebooks.py

smoke-reports: setup  ## the same on tiny synthetic data (seconds)
	$(PYTHON) scripts/run_notebooks.py --smoke

clean-reports:
	rm -rf reports
