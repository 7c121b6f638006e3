# The project's commands. `make test` is what CI runs (.ci/run) and what the README gives.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUICK ?= 0
CONFIG ?= deploy/demo.toml

.PHONY: install test lint bench soak race chaos failover run clean dst mutate

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'

# Three processes for everything but the timed trials of the whole system (marker "serial":
# failover, standby takeover, race and chaos), which then run alone, as their bounds assume.
# Three on two cores: most integration tests wait on a socket, a sim or a deadline (the
# non-serial part took 349 s on two processes and 221 s on three, at a6e7767).
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -p no:cacheprovider -m serial

# tests/layers.py: the product goes supervision -> infra -> actors and never imports sim/,
# testkit/, demo/, bench/ or tests/ (every import, inside functions too).
lint: install
	$(BIN)/python -m tests.layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy actors infra supervision sim bench demo testkit tests

# VENUE: the exchange the account of `make bench`, `make race` and `make chaos` trades on
# (binanceusdm or bybit; the sim speaks that venue's wire).
VENUE ?= binanceusdm

# The benchmarks of issue 13 (several minutes; QUICK=1 for short samples). Appends each run's
# verdicts to bench/HISTORY.md and writes bench/results.json. Not in CI.
bench: install
	QUICK=$(QUICK) BENCH_VENUE=$(VENUE) $(BIN)/python -m bench

# One hour of steady mixed load, reporting what grows (python -m bench.soak --minutes 2 for a
# short one). Not in CI.
SOAK_MINUTES ?= 60
soak: install
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

race: install
	$(BIN)/python -m bench.race --long --venue $(VENUE)

chaos: install
	$(BIN)/python -m bench.chaos --long --kills 10 --venue $(VENUE)

failover: install
	$(BIN)/python -m bench.failover --long

# Mutation testing (README, "Mutation testing"): mutmut mutates actors/transition.py and the
# actor shell's logic (setup.cfg [mutmut]) and runs, on each mutant, the thread-free unit tests
# and the simulation's slice (tests/dst/test_mutation_slice.py) that call it, two at a time.
# Results are kept in mutants/ between runs (a mutant whose function did not change is not
# run again, a survivor neither); MUTANTS='actors.restarting*' runs those named (globs) again;
# `rm -rf mutants` starts afresh. Prints killed / total per file (and without the survivors
# tests/MUTATION_EQUIVALENTS.md lists), appends it to tests/MUTATION.md. Not in CI (about an
# hour on two cores from an empty mutants/).
MUTATE_CHILDREN ?= 2
MUTANTS ?=
mutate: install
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	$(BIN)/python -m tests.mutation_score

# The deterministic simulation of the whole core (testkit/dst): SEEDS seeds, or replay SEED
# exactly (LIMIT and SKIP: a shrunk case, as a failure prints it).
SEEDS ?= 100
SEED ?=
LIMIT ?=
SKIP ?=
dst: install
	@if [ -n "$(SEED)" ]; then \
	  $(BIN)/python -m testkit.dst --seed $(SEED) $(if $(LIMIT),--limit $(LIMIT)) $(if $(SKIP),--skip $(SKIP)); \
	else $(BIN)/python -m testkit.dst --seeds $(SEEDS); fi

run: install
	$(BIN)/python -m demo

clean:
	rm -rf $(VENV) .data build *.egg-info mutants
