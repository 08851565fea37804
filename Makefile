# presencehub: `make run` starts a demo hub, `make test` runs every test.
GO       ?= go
BIN      := bin
ADDR     ?= 127.0.0.1:8080
DATA     ?= ./data
# A fixed secret for the demo only; a real deployment sets PRESENCEHUB_SECRET.
DEMO_SECRET ?= demo-secret-change-me-0123456789

.PHONY: run build test test-deps vet fmt-check bench clean

build:
	$(GO) build -o $(BIN)/presencehub ./cmd/presencehub

run: build
	$(BIN)/presencehub serve -demo -addr $(ADDR) -data $(DATA) -secret $(DEMO_SECRET)

# test-deps installs what the browser tests need (Debian's chromium) when it
# is missing, so a fresh machine needs nothing but `make test`.
test-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: test-deps fmt-check vet
	$(GO) test -race -timeout 12m ./...

# bench: the Go benchmarks of the hot paths, then a short run of every load
# scenario against a fresh hub (figures and full-size commands:
# docs/BENCHMARKS.md).
bench: build
	$(GO) build -o $(BIN)/hubload ./cmd/hubload
	$(GO) test -run '^$$' -bench . -benchtime 1s -short ./queues/ ./hub/ ./presence/
	BIN=$(BIN) scripts/bench-load.sh

clean:
	rm -rf $(BIN)
