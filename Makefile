# amobridge: build, test, lint, demo.
#
#   make build   build bin/caddy with the module (scripts/build.sh reads xcaddy.toml)
#   make test    every test: unit tests (-race), integration tests, a fuzz and a benchmark smoke run
#   make lint    gofmt must list nothing; go.mod and go.sum tidy; go vet ./...
#   make demo    build, then run Caddy + a fake amoCRM and send a legacy request through
#   make demo-cluster  the same with two Caddys sharing a Redis (redis-server needed);
#                amoCRM calls back the instance the request did not go to
#   make bench   the benchmarks, briefly
#   make clean   remove build and test output (distclean also removes .tools/)

GO        ?= go
# How many inputs each fuzz target tries in `make test` (a smoke run, not a campaign).
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can fail a
# target with a spurious "context deadline exceeded" at the deadline on a loaded
# machine (golang/go#75804, fixed in Go 1.27). By hand: FUZZTIME=5m.
FUZZTIME  ?= 100000x
# The packages whose fuzz targets the smoke run covers.
FUZZ_PKGS ?= ./legacy/ ./caddymodule/
BENCHTIME ?= 200ms
# Extra `go test` flags for the unit and integration tests, e.g. TESTFLAGS=-v.
TESTFLAGS ?=
# Integration tests start real Caddy processes; the first run also builds Caddy.
INTEGRATION_TIMEOUT ?= 20m

# Every package but the integration tests (those need bin/caddy and run apart).
# A shell snippet, so that a failing `go list` fails the target.
LIST_UNIT_PKGS = pkgs="$$($(GO) list ./...)" || exit 1; pkgs="$$(echo "$$pkgs" | grep -v '/integration_test$$')"

.PHONY: all build test test-unit test-integration fuzz-smoke bench-smoke lint fmt tidy vet demo demo-cluster bench clean distclean

all: lint test

build:
	scripts/build.sh

test: test-unit test-integration fuzz-smoke bench-smoke

# -race everywhere: the broker, the store and the handler are all concurrent.
test-unit:
	@$(LIST_UNIT_PKGS); set -x; $(GO) test -race -count=1 $(TESTFLAGS) $$pkgs

test-integration: build
	$(GO) test -race -count=1 -timeout $(INTEGRATION_TIMEOUT) $(TESTFLAGS) ./integration_test/

# Runs each fuzz target of FUZZ_PKGS for FUZZTIME. A crash is written to the
# package's testdata/fuzz/, which should then be committed as a regression case.
fuzz-smoke:
	@for pkg in $(FUZZ_PKGS); do \
		out="$$($(GO) test -list '^Fuzz' $$pkg)" || { echo "$$out"; exit 1; }; \
		targets="$$(echo "$$out" | grep '^Fuzz' || true)"; \
		if [ -z "$$targets" ]; then echo "fuzz-smoke: no fuzz targets in $$pkg"; continue; fi; \
		for t in $$targets; do \
			echo "fuzz-smoke: $$pkg $$t for $(FUZZTIME)"; \
			$(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

lint: fmt tidy vet

fmt:
	@out="$$(gofmt -l $$(find . -name '*.go' -not -path './.tools/*' -not -path '*/node_modules/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi; \
	echo "gofmt: ok"

# go.mod and go.sum must be what `go mod tidy` makes of them: every direct
# requirement in the first block, none marked // indirect, nothing unused.
tidy:
	@if ! out="$$($(GO) mod tidy -diff 2>&1)"; then \
		echo "go.mod/go.sum are not tidy (run go mod tidy):"; echo "$$out"; exit 1; fi; \
	echo "go mod tidy: ok"

vet:
	$(GO) vet ./...

demo:
	demo/run.sh

demo-cluster:
	demo/cluster.sh

bench:
	@$(LIST_UNIT_PKGS); set -x; $(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) $$pkgs

# Every benchmark, 20 iterations each: proves they run, measures nothing.
bench-smoke:
	$(MAKE) bench BENCHTIME=20x

clean:
	rm -rf bin/
	$(GO) clean -testcache

distclean: clean
	rm -rf .tools/
