# Everything the project needs is installed by these targets: Rust crates via
# cargo, Python tools into .venv/ from requirements.txt.

SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
# Keep tool caches inside the project, not in $HOME.
export XDG_CACHE_HOME ?= $(CURDIR)/.cache

.PHONY: test dev venv lint clean-venv

## make test: install what is missing, then formatting, lints and every test
## (unit, emulator integration, concurrency, Python interop).
test: venv lint
	cargo test --workspace --locked

## make dev: from a fresh clone to the API on http://127.0.0.1:3000 over a
## local emulator (Ctrl-C stops both).
dev: venv
	scripts/dev.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

clean-venv:
	rm -rf $(VENV)
