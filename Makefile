# picket — build, run and test. `make help` lists the targets.

VERSION  ?= 0.1.0
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
VPKG     := github.com/picket-dev/picket/internal/version
LDFLAGS  := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION)
BIN      := bin/picket
IMAGE    ?= picket:dev
GO       ?= go
PKGS      = $(shell $(GO) list ./... | grep -v /e2e)

.PHONY: help build run test e2e otelcol bench bench-go lint fmt docker clean

help: ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## static binary in bin/picket
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

run: build ## run the embedded single-node default (API on 127.0.0.1:7948)
	./$(BIN) agent

test: ## unit and in-process tests with the race detector
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

e2e: build ## end-to-end tests against the built binary and real peers
	PICKET_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 25m -v ./e2e/...

# The driver builds its own picket (the release build without -s -w): perf needs the symbols
# to say where a missed target's time goes.
bench: ## picket vs node_exporter, blackbox_exporter and bare Raft (BENCHMARKS.md) → bench/results.md, ~11 min
	$(GO) run ./bench/cmd/picket-bench -timeout 14m

bench-go: ## Go micro-benchmarks of every package
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt, go vet, go mod tidy check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

fmt:
	gofmt -w $$(git ls-files '*.go')

otelcol: ## the small OTel Collector the e2e tests export to (its own module in e2e/otelcol)
	e2e/otelcol/build.sh

docker: build ## image $(IMAGE) FROM scratch with the static binary
	mkdir -p build/docker/data
	cp /etc/ssl/certs/ca-certificates.crt build/docker/ca-certificates.crt
	printf 'root:x:0:0:root:/:/sbin/nologin\npicket:x:65534:65534:picket:/var/lib/picket:/sbin/nologin\n' > build/docker/passwd
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

clean:
	rm -rf bin build
