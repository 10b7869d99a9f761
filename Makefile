# Tollgate developer commands. The two that matter: `make dev` and `make test`.
# Longer shell logic lives in .ci/*.sh; everything local goes under .dev/ (git-ignored).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Prerequisites run in the order written (generate-check before lint, for instance).
.NOTPARALLEL:

BIN := $(CURDIR)/.dev/bin

.PHONY: help dev test generate generate-check lint build tools clients services services-stop clean bench

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

dev: ## Run everything locally: PostgreSQL, Redis, migrations, demo data, web, proxy, worker, fakellm.
	@MAKE="$(MAKE)" .ci/dev.sh

test: tools clients generate-check lint ## Every check and every test, against real PostgreSQL and Redis.
	@.ci/test.sh

tools: ## Install the pinned templ and sqlc into .dev/bin (when missing or at another version).
	@.ci/tools.sh

clients: ## Install the real claude and codex CLIs (npm, pinned) into .dev/clients for the e2e tests.
	@.ci/clients.sh

generate: tools ## Regenerate *_templ.go (templ) and internal/db/sqlc (sqlc).
	@.ci/generate.sh

generate-check: tools ## Fail when committed generated code is stale.
	@.ci/generate-check.sh

lint: ## gofmt -l (must list nothing) and go vet.
	@.ci/lint.sh

build: ## Static binaries web, proxy, worker, fakellm into .dev/bin.
	CGO_ENABLED=0 go build -o $(BIN)/ ./cmd/...

services: ## Start the local PostgreSQL (127.0.0.1:54329) and Redis (127.0.0.1:63799).
	@.ci/services.sh start

services-stop: ## Stop them.
	@.ci/services.sh stop

# To start over completely: make services-stop && rm -rf .dev
clean: ## Remove built binaries and test logs (keeps tools, databases and secrets in .dev/).
	rm -f $(addprefix $(BIN)/,web proxy worker fakellm testsum) .dev/logs/go-test.json

bench: build ## Benchmarks, direct to fakellm vs through the proxy (BENCH_SHORT=1: under 2 min); writes bench/results.json.
	CGO_ENABLED=0 go build -o $(BIN)/bench ./bench
	CGO_ENABLED=0 go build -o $(BIN)/floor ./bench/floor
	@$(BIN)/bench
