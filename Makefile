# Two commands on a fresh machine: `make train` (the default experiment) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test test-fast install clean

$(BIN)/srexp-train: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
# spandrel, the optional long tail of community checkpoints (tests/test_foreign.py), without its dependencies:
# its torchvision requirement would replace this torch (pyproject.toml says why it is not an extra)
	$(BIN)/pip install -q --no-deps spandrel==0.4.2 einops==0.8.2
	touch $@

install: $(BIN)/srexp-train

train: install
	$(BIN)/srexp-train $(ARGS)

# two test processes (pytest-xdist), each module's tests in one of them (its fixtures are shared): 10.5 min on 2 cores
# instead of 17; TEST_JOBS=1 runs them in one process
TEST_JOBS ?= 2
test: install
	$(BIN)/pytest -q -n $(TEST_JOBS) --dist loadfile $(ARGS)

# the inner loop: the tests not marked slow (no subprocess commands, sweeps, DDP or long trainings)
test-fast: install
	$(BIN)/pytest -q -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) outputs/* .pytest_cache
