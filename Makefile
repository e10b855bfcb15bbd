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
# Two runs: the tests that run inside pytest (unit, parsers, Pilot and snapshots) on two workers
# (pytest-xdist), then one at a time those that start memtop in a terminal or act on the machine
# (tests/live: cgroups, pressure, page cache), whose waits must not share the cores with a worker.
# With PYTEST_ARGS (e.g. -k NAME) one run may select nothing (pytest's exit status 5): that is
# fine when the other ran tests; without them, or when neither ran a test, it fails.
SERIAL := tests/tui/test_terminal.py tests/tui/test_terminal_keys_and_colour.py tests/live tests/matrix
test:
	@./scripts/setup.sh --test $(if $(filter 1,$(MEMTOP_MATRIX)),--matrix)
	@none=$(if $(strip $(PYTEST_ARGS)),5,none); \
	rc1=0; $(PY) -m pytest -q -n 2 tests/unit tests/tui $(foreach t,$(SERIAL),--ignore=$(t)) $(PYTEST_ARGS) || rc1=$$?; \
	if [ $$rc1 -ne 0 ] && [ "$$rc1" != "$$none" ]; then exit $$rc1; fi; \
	rc2=0; $(PY) -m pytest -q $(SERIAL) $(PYTEST_ARGS) || rc2=$$?; \
	if [ $$rc2 -ne 0 ] && [ "$$rc2" != "$$none" ]; then exit $$rc2; fi; \
	if [ $$rc1 -eq 5 ] && [ $$rc2 -eq 5 ]; then echo "make test: no test matched PYTEST_ARGS=$(PYTEST_ARGS)" >&2; exit 5; fi

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
