# Everything the project needs is installed by these targets: Rust crates via
# cargo, Python tools into .venv/ from requirements.txt (what the tests and
# `make dev` need) and requirements-tools.txt (release, stress, bench).

SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Keep tool caches (zig's among them) inside the project, not in $HOME.
export XDG_CACHE_HOME ?= $(CURDIR)/.cache
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
# Where cargo builds (and cargo-lambda puts the Lambda binaries): the
# environment's CARGO_TARGET_DIR when set, else target/.
export CARGO_TARGET_DIR ?= target

# Lambda targets to build: x86_64 always, arm64 (what template.yaml deploys)
# when its Rust target is installed.
ARM64 := $(shell rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu && echo yes)

.PHONY: test test-build test-prerequisites dev venv tools fmt lint validate iam-test release stress check bench smoke clean-venv

## make test: install what is missing, then formatting, the SAM template
## check, the IAM outer gate (iam-test), and every test (unit, emulator
## integration, concurrency, Python interop, events, contract), linted by
## clippy as they build.
test:
	@test -x "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found: rustup component add clippy"; exit 1; }
	$(MAKE) --no-print-directory -j2 --output-sync=target test-build test-prerequisites
	$(LINT_WHILE_BUILDING) TEST_EMULATORS=3 cargo test --workspace --locked -- --test-threads=6

# The test build and the rest of `make test` (installing the venv and the
# IAM gate's packages, the format check, the template check) at once: the
# build needs none of them, and they were a minute of a fresh clone's
# `make test` spent before cargo started. The tests run after both.
test-build:
	$(LINT_WHILE_BUILDING) cargo test --workspace --locked --no-run

test-prerequisites: $(VENV)/.installed fmt validate iam-test

# `make test` lints while it builds: clippy's driver compiles the workspace's
# own crates (RUSTC_WORKSPACE_WRAPPER and CLIPPY_ARGS, as `cargo clippy` sets
# them), warnings denied as in `make lint`. Every dependency is then compiled
# once, where `cargo clippy` followed by `cargo test` checks them all and then
# builds them again (the check was 122 s of 281 s on a fresh clone). What
# `cargo test` builds is every target `--all-targets` names but the 33
# function mains, each the one call that serves its handler (held to that by
# the contract test `every_function_main_is_the_one_call_that_serves_its_handler`).
# The clippy driver of the toolchain whose rustc cargo runs (another
# toolchain's could not read the dependencies this one compiles).
CLIPPY_DRIVER := $(shell rustc --print sysroot)/bin/clippy-driver
LINT_WHILE_BUILDING := RUSTC_WORKSPACE_WRAPPER="$(CLIPPY_DRIVER)" CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# TEST_EMULATORS: each test process spreads its stores over 3 emulators
# (test-support), which apply one request at a time each; with 6 tests at
# once the emulator-bound suites take about three quarters of the time.

## make dev: from a fresh clone to the API on http://127.0.0.1:3000 over a
## local emulator (Ctrl-C stops both).
dev: $(VENV)/.installed
	scripts/dev.sh

fmt:
	cargo fmt --all -- --check

## make lint: formatting, and clippy over every target (the function mains
## included) without building or testing anything.
lint: fmt
	cargo clippy --workspace --all-targets --locked -- -D warnings

validate: $(VENV)/.installed
	sam validate --lint

## make iam-test: the IAM outer gate in front of the API (iam/: the CI role's
## policy, what execute-api patterns cannot separate), evaluated by
## @cloud-copilot/iam-simulate under node --test; needs Node.js 20 and npm.
iam-test: iam/node_modules/.installed
	npm test --prefix iam

# npm ci only when iam/node_modules is missing or the lockfile is newer.
iam/node_modules/.installed: iam/package-lock.json iam/package.json
	npm ci --prefix iam --no-audit --no-fund
	touch $@

## make stress: 64 parallel publishes and other races, a workload under
## injected faults with an audit after it, and schemathesis's generated
## requests against openapi.yaml (at least 5000).
stress: tools
	scripts/stress.sh

## make check [SEED=n] [DURATION=s] [WORKERS=n]: the randomized race-and-
## fault checker (docs/checker.md); a violation prints its seed, a history
## excerpt and the command that replays it.
check: $(VENV)/.installed
	cargo build --quiet -p stress
	RUST_MIN_STACK=8388608 SEED=$(SEED) DURATION=$(DURATION) WORKERS=$(WORKERS) RUNS=$(RUNS) "$(CARGO_TARGET_DIR)/debug/stress" --check

## make bench: this project and versioned 1.0.1 on one emulator, per
## operation (the library in three session configurations), commit and
## publish by size, mirror lag, cold starts, resolve throughput, multipart upload
## time by parallelism, verification throughput, CLI push/pull throughput and
## peak RSS -> BENCHMARKS.md.
bench: venv release
	cargo lambda build --release --locked --x86-64 --lambda-dir $(CARGO_TARGET_DIR)/lambda-x86-64 --package local-api --package bench
	$(CARGO_TARGET_DIR)/lambda-x86-64/bench/bootstrap

## make smoke STACK=<name>: after `sam deploy`, checks the deployed stack
## with your AWS credentials: `artifact doctor` against its API (404s, not
## 403s, for missing keys under the functions' roles; checksums enforced;
## presigned URLs through the blob-prefix deny; purge), a direct write under
## the blob prefix refused, no alarm firing.
smoke: $(VENV)/.installed
	@test -n "$(STACK)" || { echo "usage: make smoke STACK=<stack name>"; exit 2; }
	$(VENV)/bin/python scripts/smoke.py "$(STACK)"

## make release: every Lambda with cargo-lambda, checked to exist, with sizes.
release: tools
	scripts/release.sh

## make venv: every pinned Python tool (`sam build` needs cargo-lambda).
venv: $(VENV)/.installed tools

tools: $(VENV)/.tools

$(VENV)/.tools: requirements-tools.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -r requirements-tools.txt
	touch $@

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

clean-venv:
	rm -rf $(VENV)
