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
# Programs built into bin/: every daemon, the CLI and the lab command.
PROGRAMS  := $(patsubst daemons/%/main.go,%,$(wildcard daemons/*/main.go)) ssi lab
LAB_NODES ?= 3

# These targets boot containers and install packages: without root, stop at
# once with one line rather than after minutes of building.
ROOT_GOALS := $(filter lab lab-bare test e2e check-packages bench-lab bench-ansible bench-vproc bench-migrate bench-lvs bench-failover bench-partition-heal bench-cfs,$(MAKECMDGOALS))
ifneq ($(ROOT_GOALS),)
ifneq ($(shell id -u),0)
$(error make $(ROOT_GOALS) needs root (it installs packages, boots containers and makes a bridge): run it as root, e.g. sudo make $(ROOT_GOALS))
endif
endif

.PHONY: help build test unit integration e2e lab lab-bare lint fmt vet staticcheck consul criu proto check-protos fuzz bench bench-dlm bench-lab bench-ansible bench-vproc bench-migrate bench-lvs bench-failover bench-partition-heal bench-cfs clean tools packages repo check-packages deps deps-lab deps-proto deps-ansible check-ansible generate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build static binaries of every daemon and ssi into bin/
	@mkdir -p $(BIN)
	@for p in $(PROGRAMS); do \
		src=./daemons/$$p; [ "$$p" = ssi ] && src=./cmd/ssi; [ "$$p" = lab ] && src=./lab/cmd/lab; \
		echo "build $(BIN)/$$p"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$p $$src || exit 1; \
	done

consul: ## provide the pinned Consul binary (built once from the Go module proxy)
	@build/consul/build.sh

criu: ## provide the pinned CRIU binary (built once from Debian's source package; root to install its -dev packages)
	@build/criu/build.sh

test: deps lint check-protos integration check-packages e2e fuzz ## everything CI runs (root; installs what is missing): lint, generated code, unit + integration against real Consul, package checks, lab e2e, fuzz smoke

deps: ## install the missing Debian packages of make test (root; build/deps.sh)
	@build/deps.sh test

deps-lab:
	@build/deps.sh lab

deps-proto:
	@build/deps.sh proto

deps-ansible:
	@build/deps.sh ansible

check-ansible: deps-ansible ## ansible-lint (production profile), yamllint and --syntax-check of ansible/, vagrant validate of vagrant/, the roles against the shipped settings
	CI=true $(GO) test -count=1 ./ansible/ ./vagrant/

integration: ## unit tests and integration tests against real Consul clusters on loopback (the nspawn/rootfs tests need root, else skip; the CRIU tests use the cached CRIU of make criu, else skip)
	consul="$$(build/consul/build.sh)" && criu="$${CRIU_BIN:-$$(build/criu/build.sh --check || true)}" && \
		CONSUL_BIN="$$consul" CRIU_BIN="$$criu" $(GO) test -count=1 -timeout 30m ./...

e2e: deps-lab deps-ansible ## multi-node tests in the lab: 3 and 5 booted nodes, kills, partitions, rolling upgrade, the Ansible rollout (root)
	consul="$$(build/consul/build.sh)" && criu="$${CRIU_BIN:-$$(build/criu/build.sh --check || true)}" && \
		CONSUL_BIN="$$consul" CRIU_BIN="$$criu" $(GO) test -tags e2e -count=1 -timeout 45m -v ./test/e2e/

lab: deps-lab build repo ## bring up a $(LAB_NODES)-node cluster on this machine (root; installs what is missing): nspawn nodes with Consul and openssi from the local repository
	@build/consul/build.sh >/dev/null
	$(BIN)/lab up -n $(LAB_NODES) --dist dist --consul "$$(build/consul/build.sh)"

lab-bare: deps-lab build repo ## bring up $(LAB_NODES) bare nodes (sshd and Python, no Consul, no openssi) for an Ansible rollout (root); then bin/lab inventory
	@build/consul/build.sh >/dev/null
	$(BIN)/lab up --bare -n $(LAB_NODES) --dist dist --consul "$$(build/consul/build.sh)"

unit: ## every test that needs neither Consul nor root; the others skip (runs as any user, installs nothing)
	OPENSSI_NO_CONSUL=1 OPENSSI_NO_ROOT=1 $(GO) test -count=1 ./...

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

proto: deps-proto tools ## regenerate the Go code of proto/
	cd proto && PATH="$(GOBIN_DIR):$$PATH" $(GO) generate ./...

generate: proto ## regenerate every committed derived file: proto/ and rpm/openssi.spec's units line (from internal/daemons)
	$(GO) run ./packaging/cmd/openssi-pkg spec

check-protos: proto ## fail when the committed generated code is not what `make proto` makes
	@git diff --exit-code -- proto/ || { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }

fuzz: ## run every fuzz target for FUZZTIME (default 5s); a failing input fails it (build/fuzz.sh)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) build/fuzz.sh

bench: build ## failure-detection benchmark (tuned vs default gossip), writes bench/failure-detection/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/failure-detection -trials 20 -clmsd $(BIN)/clmsd -out bench/failure-detection/RESULTS.md

bench-dlm: build ## dlm against Consul's lock, writes bench/dlm/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/dlm -clmsd $(BIN)/clmsd -dlmd $(BIN)/dlmd -out bench/dlm/RESULTS.md

bench-ansible: repo deps-lab deps-ansible ## ansible/site.yml from 3 bare lab nodes to 3 UP, and its no-change second run (root), writes bench/ansible/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/ansible -dist dist -out bench/ansible/RESULTS.md

bench-lab: repo ## lab start-up time, memory per node, failure detection in the lab (root), writes bench/lab/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/lab -dist dist -out bench/lab/RESULTS.md

bench-partition-heal: repo ## flaps of healthy nodes after a healed partition, per suspicion_mult, in the lab (root), writes bench/partition-heal/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/partition-heal -dist dist -out bench/partition-heal/RESULTS.md

bench-vproc: repo ## ssi exec against ssh (fresh and ControlMaster) in the lab, ssi ps at 3 and 8 nodes (root), writes bench/vproc/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/vproc -dist dist -out bench/vproc/RESULTS.md

bench-cfs: repo ## cfsd's mount against sshfs (fio sequential, metadata rates, cached re-read) from node 2 of the lab (root), writes bench/cfs/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/cfs -dist dist -out bench/cfs/RESULTS.md

bench-migrate: repo ## freeze time of ssi migrate (cooperative and CRIU) against same-node criu dump+restore, the leveler from 6/0/0 to 2/2/2, in the lab with CRIU (root), writes bench/migrate/RESULTS.md
	consul="$$(build/consul/build.sh)" && criu="$$(build/criu/build.sh)" && CONSUL_BIN="$$consul" CRIU_BIN="$$criu" $(GO) run ./bench/migrate -dist dist -out bench/migrate/RESULTS.md

bench-lvs: repo ## lvsd's proxy against HAProxy, its VIP failover against keepalived, listen() to the first routed connection, in the lab (root), writes bench/lvs/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/lvs -dist dist -out bench/lvs/RESULTS.md

bench-failover: repo ## singleton failover in the lab: SIGKILL of the node to answering again, OpenSSI's init against consul lock and Pacemaker (root), writes bench/failover/RESULTS.md
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) run ./bench/failover -dist dist -out bench/failover/RESULTS.md

packages: ## dist/openssi_<version>_amd64.deb and dist/openssi-<version>-1.x86_64.rpm (nfpm, reproducible)
	$(GO) run ./packaging/cmd/openssi-pkg build --out dist

repo: packages ## signed apt and yum repositories of dist/ in dist/repo (key kept in ~/.cache/openssi/repo-key)
	$(GO) run ./packaging/cmd/openssi-pkg repo --dist dist --out dist/repo

check-packages: ## lintian, rpmlint, unit checks, debian/ vs nfpm, install/upgrade/purge and boot tests (root; ~1.5 min warm)
	@build/deps.sh --update-lists test
	$(GO) vet -tags packages ./test/packages/
	consul="$$(build/consul/build.sh)" && CONSUL_BIN="$$consul" $(GO) test -tags packages -count=1 -timeout 20m -v ./test/packages/ ./internal/rootfs/ ./internal/nspawn/

clean: ## remove build output
	rm -rf $(BIN) dist
