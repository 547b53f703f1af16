# Outpost's make targets. The README's two commands are `make run` and
# `make test`; every other target is a step of those.

SHELL := /bin/bash
TOOLS_DIR ?= $(HOME)/.cache/outpost/tools
export OUTPOST_TOOLS_DIR := $(TOOLS_DIR)
TOOLS_BIN := $(TOOLS_DIR)/bin
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen
STATE_DIR ?= .outpost

.PHONY: run test deps deps-run generate check-generated vet build bench bundle

## run: install what the single host needs, build, and run `outpost up`.
run: deps-run build
	./bin/outpost up --state-dir $(STATE_DIR)

## test: install everything, check generated files and vet, then run every test.
test: deps check-generated vet
	go test -count=1 -timeout 30m ./...

## deps: install every real dependency (PostgreSQL, pgvector, MinIO, etcd, the Kubernetes components, CoreDNS, containerd, controller-gen, helm).
deps:
	scripts/install-deps.sh

## deps-run: install only what `outpost up` needs (PostgreSQL and pgvector).
deps-run:
	scripts/install-deps.sh run

build:
	go build -o bin/outpost ./cmd/outpost

## bundle: write outpost-bundle.tar, the signed air-gap bundle (both images, the chart, the binary).
## The images' base layer is built by `make deps` (step image-base).
bundle: deps build
	./bin/outpost bundle create -o outpost-bundle.tar

## generate: regenerate deepcopy functions and the CRDs in charts/outpost/crds.
generate:
	$(CONTROLLER_GEN) object paths=./controller/api/...
	$(CONTROLLER_GEN) crd paths=./controller/api/... output:crd:dir=charts/outpost/crds

## check-generated: fail when `make generate` changes anything.
check-generated:
	scripts/check-generated.sh

vet:
	go vet ./...

## bench: run the benchmarks in test/bench; each reports its ratio to the reference.
## The backup comparisons with pgBackRest and the restore of an incremental
## chain build 1-2 GB databases, search at scale builds a 500k-vector index,
## and the ingest comparisons with psql's binary COPY alternate their own
## rounds (1.5M x 128 with HNSW takes minutes a round), so they run once.
bench: deps
	go test -run '^$$' -bench . -skip '^Benchmark(BackupVsPgBackRest|IncrementalBackupVsPgBackRest|RestoreChainVsFull|FeatureStoreSearchAtScale|IngestVsBinaryCopy|IngestWithHNSW)$$' -benchtime 5x -timeout 30m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkBackupVsPgBackRest$$' -benchtime 1x -timeout 60m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkIncrementalBackupVsPgBackRest$$' -benchtime 1x -timeout 60m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkRestoreChainVsFull$$' -benchtime 1x -timeout 60m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkFeatureStoreSearchAtScale$$' -benchtime 1x -timeout 60m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkIngestVsBinaryCopy$$' -benchtime 1x -timeout 30m ./test/bench/
	go test -run '^$$' -bench '^BenchmarkIngestWithHNSW$$' -benchtime 1x -timeout 60m ./test/bench/
