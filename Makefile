# reef — see README.md. `make run` starts a local cluster, `make test` runs everything.
SHELL := bash
.SHELLFLAGS := -o pipefail -euc
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := build

export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go
BIN := bin/reef
PEERS ?= 6
RUN_DIR ?= $(CURDIR)/run
TEST_TIMEOUT ?= 25m
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build deps run stop status test unit integration vet fmt-check tidy-check bench bench-go bench-e2e bench-fs bench-repair clean

# deps installs what a fresh Debian machine lacks: fuse3 (fusermount) for the
# mount, rsync for the tests that copy trees with it. Go itself must be on the
# machine (/usr/local/go).
deps:
	@command -v $(GO) >/dev/null || { echo "make: Go is not installed (want go1.26 at /usr/local/go)"; exit 1; }
	@missing=""; \
	command -v fusermount3 >/dev/null || command -v fusermount >/dev/null || missing="$$missing fuse3"; \
	command -v rsync >/dev/null || missing="$$missing rsync"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing </dev/null; \
	fi
	@[ -e /dev/fuse ] || { $(SUDO) modprobe fuse 2>/dev/null || true; }

build:
	$(GO) build -o $(BIN) ./cmd/reef

run: deps build
	@scripts/cluster.sh start "$(RUN_DIR)" $(PEERS)

stop:
	@scripts/cluster.sh stop "$(RUN_DIR)"

status: build
	@$(BIN) status

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check:
	@cp go.mod /tmp/reef-go.mod.bak; cp go.sum /tmp/reef-go.sum.bak; \
	$(GO) mod tidy; \
	if ! diff -q go.mod /tmp/reef-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/reef-go.sum.bak >/dev/null; then \
		echo "go.mod/go.sum are not tidy (run go mod tidy)"; cp /tmp/reef-go.mod.bak go.mod; cp /tmp/reef-go.sum.bak go.sum; exit 1; fi

# test is the whole suite: unit tests (with the race detector), then the
# multi-process and FUSE integration tests against the real binary.
test: deps fmt-check vet build unit integration

# Every unit test runs once in full, then the concurrent packages once more
# under the race detector (-short: the race detector slows the exhaustive
# erasure and chunker matrices tenfold without finding more there).
RACE_PKGS := ./store/ ./namespace/ ./membership/ ./blockstore/... ./metrics/ ./peer/ ./fs/ ./cmd/...
unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /integration) bazil.org/fuse
	$(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)

integration: build
	REEF_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./integration/

# bench runs the Go micro-benchmarks and the end-to-end put/get benchmark
# beside dd on local disk; results go to bench-results/ (see docs/BENCHMARKS.md).
bench: bench-go bench-e2e bench-fs bench-repair

bench-go:
	@mkdir -p bench-results
	$(GO) test -run='^$$' -bench=. -benchtime=2s -count=1 ./chunker/ ./erasure/ ./crypt/ ./store/ ./blockstore/ ./placement/ | tee bench-results/go-bench.txt

bench-e2e: deps build
	@mkdir -p bench-results
	scripts/bench-e2e.sh | tee bench-results/e2e.txt

bench-fs: deps build
	@mkdir -p bench-results
	scripts/bench-fs.sh | tee bench-results/fs.txt

bench-repair: deps build
	@mkdir -p bench-results
	scripts/bench-repair.sh | tee bench-results/repair.txt

clean: stop
	rm -rf bin run bench-results
