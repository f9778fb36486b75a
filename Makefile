# The two commands a newcomer needs:  make run   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit peers bench mutants kamailio-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make run: set up, then the main job: the Direct Routing SBC plan against the embedded reference SBC
run: $(STAMP)
	$(BIN)/sbcsim run testplans/direct-routing-sbc.yaml --out out/run --junit out/run/junit.xml --html out/run/report.html

## make mutants: every plan against every mutant; prints the mutation score (must be 100 %)
mutants: $(STAMP)
	$(BIN)/sbcsim mutants --score testplans/direct-routing-sbc.yaml -j 2
	$(BIN)/sbcsim mutants --score testplans/contact-center-connect.yaml -j 2

## make peers: the Debian packages of the real peers the interop tests talk to
peers:
	./scripts/install-peers.sh

## make kamailio-check: Kamailio (docker/kamailio/, with rtpengine) as the live SBC under test:
## certs, start it on loopback, the whole Direct Routing plan with a JUnit file, stop it, print
## the verdicts and compare them with docker/kamailio/expected-verdicts.yaml.  `make test` runs
## the same through tests/interop/test_kamailio.py (on a free block of loopback addresses).
kamailio-check: $(STAMP) peers
	$(BIN)/python -m sbcsim.testing.kamailio --out out/kamailio

## make test: set up everything the tests need, then lint, type-check and the whole suite
test: $(STAMP) peers lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check sbcsim tests benchmarks
	$(BIN)/ruff format --check sbcsim tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict sbcsim

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/parse.py
	$(BIN)/python benchmarks/plan.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
