# The two commands of the README's quick start: `make run` and `make test`.
# Both set everything up first (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-fast lock test-matrix bench screenshots clean

setup:
	@./scripts/setup.sh

run: setup
	@$(VENV)/bin/memtop $(ARGS)

# MEMTOP_MATRIX=1 make test: the normal suite and the kernel and glibc matrix (tests/matrix).
test:
	@./scripts/setup.sh --test $(if $(filter 1,$(MEMTOP_MATRIX)),--matrix)
	@$(PY) -m pytest -q $(PYTEST_ARGS)

# The unit and parser tests (text captured from real /proc files), under a minute (24 s here):
# not the ones that start memtop as a command (exit codes, help and completion, headless
# imports), the record fuzz nor the guard's socket timeouts, which `make test` runs (~55 s more).
FAST_SKIP := test_exit_codes test_help_and_completion test_headless_imports test_record_crafted_fuzz test_guard_metrics
test-fast:
	@./scripts/setup.sh
	@$(PY) -m pytest -q tests/unit $(foreach t,$(FAST_SKIP),--ignore=tests/unit/$(t).py) $(PYTEST_ARGS)

# constraints.txt again from the .venv the suite passed in (after changing a dependency).
lock:
	@{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --all --exclude-editable --disable-pip-version-check \
		| grep -v '^setuptools==\|^wheel=='; } > constraints.txt.new && mv constraints.txt.new constraints.txt

# The kernel and glibc matrix alone (issue 17): Debian kernels under virtme-ng, glibc chroots.
test-matrix:
	@./scripts/setup.sh --matrix
	@MEMTOP_MATRIX=1 $(PY) -m pytest -q tests/matrix $(PYTEST_ARGS)

screenshots: setup
	@./scripts/screenshots.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
