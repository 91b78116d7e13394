# mtlbench: `make demo` (venv + install + a small comparison on the built-in synthetic db)
#           `make test` (venv + install + the whole test suite)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mtlbench-installed
DEMO_DIR ?= demo-work
DEMO_SEEDS ?= 0 1 2

.PHONY: install demo test mutation clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Progress bars (method, db, seed) and one log line per epoch show while it trains; --quiet would hide them.
demo: install
	$(BIN)/python -m benchmark run --method single_task --db synthetic --seed $(DEMO_SEEDS) --workdir $(DEMO_DIR)
	$(BIN)/python -m benchmark run --method no_coupling --db synthetic --seed $(DEMO_SEEDS) --workdir $(DEMO_DIR)
	$(BIN)/python -m benchmark report --db synthetic --workdir $(DEMO_DIR)

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# Mutation testing (cosmic-ray) of the modules the numbers rest on; slow, not in CI. See docs/mutation.md.
# MUTATION_ARGS: e.g. 'benchmark/metrics.py --budget 600 --until 02:40'; the report goes to mutation/report.md.
mutation: install
	$(BIN)/python -m mutation.run $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
