# Two commands on a fresh machine: `make train` (the default experiment) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test install clean

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

clean:
	rm -rf $(VENV) outputs/* .pytest_cache
