# VoltEdge — build, test, demo and benchmark.
GO      ?= go
BIN     ?= bin
FUZZTIME ?= 20s
N       ?= 1000
BENCH_DURATION ?= 30s
CHAOS_TIMEOUT ?= 30s
FAULTS  ?= all

SERVICES := comsrv modsrv alarmsrv netsrv
TOOLS    := edgectl dtusim benchrun chaos webhookrecv exportcheck
# Benchmark commands that live beside the service they measure (tools/ may
# not import a service).
BENCHES  := netsrv/netbench alarmsrv/webhook/webhookbench

.PHONY: all build test vet fmt-check lint-lua fuzz demo bench bench-netsrv chaos clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./,$(SERVICES)) $(addprefix ./tools/,$(TOOLS)) $(addprefix ./,$(BENCHES))

## test: everything CI runs — formatting, vet, the Lua lint, every test (real Redis, started
## privately per test), and the concurrent packages again under the race detector.
test: fmt-check vet lint-lua
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -race -count=1 -timeout 15m ./comsrv/... ./modsrv/... ./netsrv/spool ./netsrv/upload ./alarmsrv/... ./internal/contract ./internal/redisconn ./internal/lualib ./internal/svc ./internal/metrics ./tools/dtusim/...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## lint-lua: luacheck over the Lua library (config: scripts/.luacheckrc; Debian: apt-get install
## lua-check). Without luacheck it is skipped with a warning, except under CI (CI=true or
## VOLTEDGE_REQUIRE_LUACHECK set), where it fails.
lint-lua:
	@if command -v luacheck >/dev/null 2>&1; then \
	  luacheck --no-color --config scripts/.luacheckrc scripts/voltedge.lua; \
	elif [ "$${CI:-}" = true ] || [ -n "$${VOLTEDGE_REQUIRE_LUACHECK:-}" ]; then \
	  echo "lint-lua: luacheck not found (apt-get install lua-check)" >&2; exit 1; \
	else \
	  echo "lint-lua: WARNING: luacheck not found, Lua lint skipped (apt-get install lua-check)" >&2; \
	fi

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

## demo: Redis (shared or private), Lua, mappings, comsrv, three simulated DTUs, the other services.
demo: build
	./tools/demo.sh

## bench: comsrv against N simulated DTU links (make bench N=10000).
bench: build
	$(BIN)/benchrun -bin $(BIN) -n $(N) -duration $(BENCH_DURATION)

## bench-netsrv: netsrv's upload path against the local MariaDB/MySQL (VOLTEDGE_MYSQL_SERVER, each
## run in a database of its own) and a private redis-server: rows/s into MySQL, catch-up after an
## outage, netsrv's RSS draining a 1 GB spool, Redis CPU per response with and without the data
## stream. make bench-netsrv NETBENCH_ARGS='-mode ingest -repeat 5'
VOLTEDGE_MYSQL_SERVER ?= root@tcp(127.0.0.1:3306)/
NETBENCH_ARGS ?=
bench-netsrv: build
	$(BIN)/netbench -bin $(BIN) -server '$(VOLTEDGE_MYSQL_SERVER)' $(NETBENCH_ARGS)

## chaos: faults against comsrv with N simulated DTUs, one after the other (Redis restart, every
## link dropped, comsrv killed with controls queued); exits 1 when anything was lost or wrong.
## make chaos N=100 FAULTS=links,comsrv CHAOS_TIMEOUT=20s
chaos: build
	$(BIN)/chaos -bin $(BIN) -n $(N) -timeout $(CHAOS_TIMEOUT) -faults $(FAULTS)

clean:
	rm -rf $(BIN)
