# Two commands on a fresh machine: `make train` (the default experiment) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test test-fast install clean

$(BIN)/srexp-train: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/srexp-train

train: install
	$(BIN)/srexp-train $(ARGS)

test: install
	$(BIN)/pytest -q $(ARGS)

# the inner loop: the tests not marked slow (no subprocess commands, sweeps, DDP or long trainings)
test-fast: install
	$(BIN)/pytest -q -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) outputs/* .pytest_cache
