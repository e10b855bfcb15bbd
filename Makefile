# The two commands of the README's quick start: `make run` and `make test`.
# Both set everything up first (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-matrix bench screenshots clean

setup:
	@./scripts/setup.sh

run: setup
	@$(VENV)/bin/memtop $(ARGS)

# MEMTOP_MATRIX=1 make test: the normal suite and the kernel and glibc matrix (tests/matrix).
test:
	@./scripts/setup.sh --test $(if $(filter 1,$(MEMTOP_MATRIX)),--matrix)
	@$(PY) -m pytest -q $(PYTEST_ARGS)

# The kernel and glibc matrix alone (issue 17): Debian kernels under virtme-ng, glibc chroots.
test-matrix:
	@./scripts/setup.sh --matrix
	@MEMTOP_MATRIX=1 $(PY) -m pytest -q tests/matrix $(PYTEST_ARGS)

screenshots: setup
	@./scripts/screenshots.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
