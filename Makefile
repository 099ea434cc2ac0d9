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

retrain: setup  ## retrain one dataset end to end into a run folder: make retrain DATASET=ml-100k [RUN=runs/x]
	@test -n "$(DATASET)" || { echo "make retrain needs DATASET=ml-1m|lastfm|ml-100k (and optionally RUN=runs/<name>)"; exit 2; }
	$(PYTHON) scripts/retrain.py $(DATASET) $(if $(RUN),--run $(RUN))

promote:  ## copy a finished run over the shipped models/ and res_csv/: make promote RUN=runs/<name>
	@test -n "$(RUN)" || { echo "make promote needs RUN=runs/<name> (a finished run of make retrain)"; exit 2; }
	$(PYTHON) scripts/promote_run.py $(RUN)
