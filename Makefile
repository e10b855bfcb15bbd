# The two commands of the README's quick start: `make run` and `make test`.
# Both set everything up first (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench screenshots clean

setup:
	@./scripts/setup.sh

run: setup
	@$(VENV)/bin/memtop $(ARGS)

test:
	@./scripts/setup.sh --test
	@$(PY) -m pytest -q $(PYTEST_ARGS)

screenshots: setup
	@./scripts/screenshots.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
