# vipspeaker — run `make help` for the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export GOFLAGS ?= -mod=mod

GOLANGCI_VERSION := v2.15.0
TOOLS := $(CURDIR)/.tools
GOLANGCI := $(TOOLS)/golangci-lint-$(GOLANGCI_VERSION)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO_TEST_TIMEOUT ?= 25m

.PHONY: help build image deps test test-tools lint demo demo-down demo-cluster bench generate clean e2e-real

help: ## Show the targets and what they do
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## Build the agent into bin/vipspeaker
	go build -ldflags '$(LDFLAGS)' -o bin/vipspeaker ./cmd/vipspeaker

image: ## Build the agent's image from Go alone (linux/amd64+arm64 OCI index, layout + tarballs) into build/image/; prints the digest and the push command
	go run ./hack/image -version $(VERSION) -commit $(COMMIT)

deps: ## Install the Debian packages and Go modules the lab and tests use (skips what is there)
	@scripts/deps.sh

$(GOLANGCI):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS= go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(TOOLS)/golangci-lint $(GOLANGCI)

lint: $(GOLANGCI) ## gofmt, go vet and golangci-lint (depguard enforces ARCHITECTURE.md's dependency table)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(GOLANGCI) run --allow-parallel-runners ./...

# CI=true (the default for `make test`) turns every skip of a test that
# cannot run here into a failure (internal/nstest.Skip); `make test CI=false`
# lets such tests skip with their reason.
test: export CI ?= true
test: deps lint test-tools ## Everything CI runs: deps, lint, bpf2go output up to date, then all tests with -race and CI=true (skips fail; root: namespaces, FRR, BIRD)
	bpf/check-generated.sh
	go test -race -count=1 -p 2 -timeout $(GO_TEST_TIMEOUT) $$(go list ./... | grep -v '/test/e2e/realnodes$$')
	@# The real-node suite runs alone: three kubelets, containerd and the
	@# agents fill two cores, and next to another lab package the agents'
	@# membership (100 ms probes) once took a live node for dead.
	go test -race -count=1 -timeout $(GO_TEST_TIMEOUT) ./test/e2e/realnodes

test-tools: ## Build the test-only tools once per machine (kube-apiserver, kubelet, kube-proxy, kube-controller-manager, kube-scheduler, kubectl, KWOK, helm, kustomize, MetalLB's speaker and controller; cached)
	test/apiserver/build.sh all >/dev/null
	test/kwok/build.sh >/dev/null
	go run ./test/e2e/ops/prebuild
	go run ./test/cmd/metallb

demo: deps build ## Start the lab: a router, two nodes running vipspeaker, a client reaching the VIPs
	go run ./test/cmd/demo up

demo-down: ## Remove everything `make demo` created
	go run ./test/cmd/demo down

demo-cluster: deps test-tools ## The same on real nodes: three kubelet nodes, the agent installed with kubectl apply -k, Pods behind a BGP and a layer-2 VIP, clients, a rolling restart under load; stays up until Ctrl-C (root)
	go test -tags 'e2ereal democluster' -v -count=1 -timeout 0 -run 'TestDemoCluster' ./test/e2e/realnodes

e2e-real: deps test-tools ## Every real-node scenario (three kubelet nodes, the agent installed with kubectl apply -k, HTTP clients through the VIPs); one line per scenario, then N passed, N failed (root)
	set -o pipefail; go test -tags e2ereal -json -count=1 -timeout 40m -run '^(TestE2EReal|TestDualStack)$$' ./test/e2e/realnodes | go run ./test/cmd/e2ereal

bench: deps build test-tools ## Measure everything against baselines, MetalLB v0.15.2 side by side included; writes bench/RESULTS.md and bench/RESULTS.json (root, about an hour; ONLY=bgp,metallb runs some sections, KEEP=1 keeps the others from the report already there)
	go run ./test/cmd/bench $(if $(ONLY),-only $(ONLY)) $(if $(KEEP),-keep)

generate: ## Regenerate generated code (bpf2go output)
	go generate ./...

clean: ## Remove build output
	rm -rf bin build
