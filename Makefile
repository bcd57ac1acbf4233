# The one task runner of civic. CI (.ci/run) calls these same recipes, so a green `make ci`
# here means a green CI. `make` alone lists the targets.
#
# bench: `civic bench` in release (docs/performance.md); CI does not run it (timings need a quiet machine).

.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
# Where `make test-services` finds PostgreSQL and NATS JetStream; .ci/run starts both if they are
# down. Each test creates (and drops) its own database on this server, and its own stream.
CIVIC_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
CIVIC_TEST_NATS_URL ?= nats://127.0.0.1:4222


.PHONY: help run test test-split test-services test-deployment bench fmt fmt-check lint proto-lint deploy-check deny advisories ci

help: ## List the targets (the default)
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

run: ## Run every service on SQLite with the Zhongjie Street demo data (the README's first command)
	$(CARGO) run -- serve --target=all --seed

test: ## Run the tests on SQLite with in-process events (the README's second command)
	$(CARGO) test --workspace

# Split mode is deployed with a broker: services hear each other's events (a visit's problems
# become issues) only through NATS, so the split tests on SQLite use it too.
test-split: ## Run the tests on SQLite with each service as its own target (split mode, NATS events)
	CIVIC_TEST_NATS_URL='$(CIVIC_TEST_NATS_URL)' CIVIC_TEST_MODE=split $(CARGO) test --workspace

test-services: ## Run the same tests against PostgreSQL and NATS JetStream, all-in-one then split
	CIVIC_TEST_POSTGRES_URL='$(CIVIC_TEST_POSTGRES_URL)' CIVIC_TEST_NATS_URL='$(CIVIC_TEST_NATS_URL)' \
		$(CARGO) test --workspace
	CIVIC_TEST_POSTGRES_URL='$(CIVIC_TEST_POSTGRES_URL)' CIVIC_TEST_NATS_URL='$(CIVIC_TEST_NATS_URL)' \
		CIVIC_TEST_MODE=split $(CARGO) test --workspace

# Eleven `civic serve` processes (each service twice, a gateway) on PostgreSQL and NATS, a replica of
# each killed mid-run, one trace followed across them (tests/deployment.rs); ignored by `make test`.
test-deployment: ## Run the whole split deployment as processes on PostgreSQL and NATS JetStream
	CIVIC_TEST_POSTGRES_URL='$(CIVIC_TEST_POSTGRES_URL)' CIVIC_TEST_NATS_URL='$(CIVIC_TEST_NATS_URL)' \
		$(CARGO) test --test deployment -- --ignored

bench: ## The benchmark, every scenario, in release (docs/performance.md)
	$(CARGO) run --release -- bench --scenario all

fmt: ## Format every crate
	$(CARGO) fmt --all

fmt-check: ## Fail if any file is not formatted
	$(CARGO) fmt --all -- --check

lint: ## Clippy on every crate and target, warnings as errors (rules in Cargo.toml and clippy.toml)
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# npm's own check, not a file target: packages unpack with a 1985 mtime, so make would always
# think node_modules is older than package-lock.json and reinstall.
proto-lint: ## Lint the .proto contract with buf (rules in proto/buf.yaml, explained in proto/README.md)
	@test -x node_modules/.bin/buf || npm ci --no-audit --no-fund
	npx buf lint proto

# kubectl (kustomize v5) must be installed; kubernetes-validate and checkov, pinned in the
# script, are installed from PyPI into a virtual environment under ~/.cache the first time.
deploy-check: ## Render every Kubernetes overlay, validate it (--strict), check civic's rules, scan it and the image with checkov
	deploy/check

deny: ## Check licences, banned and duplicate crates, and sources (rules in deny.toml; installs cargo-deny when missing)
	@command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny
	$(CARGO) deny check licenses bans sources

advisories: ## Check the RustSec advisory database too (needs the network to fetch it)
	@command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny
	$(CARGO) deny check advisories

ci: ## Everything CI runs: format, clippy, buf, the manifests, licences and sources, the tests, then PostgreSQL and NATS
	.ci/run
