# OpenSSI — build, test and lint.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO        ?= go
export GOFLAGS ?= -mod=mod
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -s -w -X github.com/openssi/openssi/internal/version.Version=$(VERSION)
BIN       := bin
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
FUZZTIME  ?= 5s
# Programs built into bin/: every daemon and the CLI.
PROGRAMS  := $(patsubst daemons/%/main.go,%,$(wildcard daemons/*/main.go)) ssi

.PHONY: help build test unit lint fmt vet staticcheck consul proto check-protos fuzz bench clean tools

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build static binaries of every daemon and ssi into bin/
	@mkdir -p $(BIN)
	@for p in $(PROGRAMS); do \
		src=./daemons/$$p; [ "$$p" = ssi ] && src=./cmd/ssi; \
		echo "build $(BIN)/$$p"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$p $$src || exit 1; \
	done

consul: ## provide the pinned Consul binary (built once from the Go module proxy)
	@build/consul/build.sh

test: lint check-protos ## the full test suite: lint, generated code, unit + integration tests against real Consul, fuzz smoke
	CONSUL_BIN="$$(build/consul/build.sh)" $(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

unit: ## only the tests that need no Consul (the pure cores and the CLI)
	$(GO) test -count=1 ./daemons/clmsd/membership/... ./internal/config/... ./internal/logging/... ./internal/lifecycle/... ./cmd/...

lint: fmt vet staticcheck ## gofmt, go vet and staticcheck

fmt:
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: tools
	$(GOBIN_DIR)/staticcheck ./...

tools: ## install the pinned code generators and linters into GOPATH/bin
	@[ -x $(GOBIN_DIR)/staticcheck ] || GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@[ -x $(GOBIN_DIR)/protoc-gen-go ] || GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(GOBIN_DIR)/protoc-gen-go-grpc ] || GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools ## regenerate the Go code of proto/
	cd proto && PATH="$(GOBIN_DIR):$$PATH" $(GO) generate ./...

check-protos: proto ## fail when the committed generated code is not what `make proto` makes
	@git diff --exit-code -- proto/ || { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }

fuzz: ## run every fuzz target for FUZZTIME (default 5s)
	@set -e; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg >/dev/null || { $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=1x $$pkg; exit 1; }; \
		done; \
	done

bench: build ## failure-detection benchmark (tuned vs default gossip), writes bench/failure-detection/RESULTS.md
	CONSUL_BIN="$$(build/consul/build.sh)" $(GO) run ./bench/failure-detection -trials 20 -clmsd $(BIN)/clmsd -out bench/failure-detection/RESULTS.md

clean: ## remove build output
	rm -rf $(BIN) dist
