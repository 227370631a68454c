# torchbook: `make demo` builds everything and runs the example notebooks headless; `make test`
# runs every test. Build output and the Python environment live in a cache outside the clone,
# keyed by what they were built from, so CI reuses them and a stale cache cannot pass a test.

SHELL := /bin/bash
# rust-analyzer's crates read `CI` at compile time, so a build with it set and one without would
# rebuild them in turn; no step here needs it.
unexport CI
CACHE ?= $(HOME)/.cache/torchbook
PYTHON ?= python3

PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV_KEY := $(shell cat requirements-dev.txt | sha256sum | cut -c1-16)-py$(PY_VERSION)
VENV := $(CACHE)/venv-$(VENV_KEY)
# Jupyter Enterprise Gateway pins jupyter_client<7, jupyter_server<2, pyzmq<25: a venv of its own,
# keyed like VENV by its requirements file (every package pinned as resolved).
EG_VENV := $(CACHE)/venv-eg-$(shell cat requirements-eg.txt | sha256sum | cut -c1-16)-py$(PY_VERSION)
RUSTC_KEY := $(shell rustc --version | sha256sum | cut -c1-12)
export CARGO_TARGET_DIR ?= $(CACHE)/target-$(RUSTC_KEY)
# libtorch: the CPU part of the torch wheel (DESIGN §4), in the cache, keyed by version.
TORCH_VERSION := 2.13.0
LIBTORCH_HOME := $(CACHE)/libtorch-$(TORCH_VERSION)-cpu
export LIBTORCH := $(LIBTORCH_HOME)/torch
export LD_LIBRARY_PATH := $(LIBTORCH)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export TORCHBOOK_CACHE := $(CACHE)
# Data sets for the example notebooks (scripts/fetch_data.py, then scripts/write_parquet.py with
# the venv's pyarrow), keyed by the scripts that make them.
DATA := $(CACHE)/data-$(shell cat scripts/fetch_data.py scripts/write_parquet.py | sha256sum | cut -c1-12)
export TORCHBOOK_DATA := $(DATA)
# One profile for tests, demo and benchmarks: the dependencies (evcxr, rust-analyzer) are built once.
PROFILE := release
BIN := $(CARGO_TARGET_DIR)/$(PROFILE)/torchbook
export TORCHBOOK_BIN := $(BIN)

.PHONY: all build libtorch venv data evcxr kernelspec demo gpu gpu-kit age-cli gloo-headers test test-rust test-python test-prelude-cold bench bench-latency bench-fit bench-apps bench-ddp clean-cache \
  cargo-fuzz fuzz-build test-fuzz fuzz-long test-slow chromium test-ui eg-venv test-eg \
  hub-venv shared-install test-shared podman-tools image-base image test-image

all: build

$(LIBTORCH_HOME)/.complete:
	rm -rf $(LIBTORCH_HOME).partial
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps \
	  --target $(LIBTORCH_HOME).partial torch==$(TORCH_VERSION) \
	  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
	rm -rf $(LIBTORCH_HOME) && mv $(LIBTORCH_HOME).partial $(LIBTORCH_HOME)
	touch $@

libtorch: $(LIBTORCH_HOME)/.complete

build: libtorch gloo-headers
	cargo build --$(PROFILE) --locked --workspace

# No prerequisite: the path is keyed by the requirements' content, and a fresh clone's newer
# file times must not rebuild an identical venv.
$(VENV)/.complete:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The papermill plug-in (python/papermill-torchbook), reinstalled when its files change.
PAPERMILL_PLUGIN_KEY := $(shell find python/papermill-torchbook -type f -not -path '*/__pycache__/*' -not -path '*.egg-info/*' \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
$(VENV)/.papermill-torchbook-$(PAPERMILL_PLUGIN_KEY): $(VENV)/.complete
	dir=$$(mktemp -d); cp -r python/papermill-torchbook/. $$dir; \
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps $$dir; code=$$?; rm -rf $$dir; exit $$code
	rm -f $(VENV)/.papermill-torchbook-*
	touch $@

# `.venv` in the project is the keyed venv in the cache.
venv: $(VENV)/.complete $(VENV)/.papermill-torchbook-$(PAPERMILL_PLUGIN_KEY)
	ln -sfn $(VENV) .venv

$(DATA)/.complete: | $(VENV)/.complete
	$(PYTHON) scripts/fetch_data.py $(DATA)
	$(VENV)/bin/python scripts/write_parquet.py $(DATA)
	touch $@

data: $(DATA)/.complete

# Installing also builds the prelude cache (minutes the first time, then instant).
kernelspec: build venv data
	set -o pipefail; VIRTUAL_ENV=$(VENV) $(BIN) install --sys-prefix --libtorch $(LIBTORCH) | tee $(CACHE)/install.log

demo: kernelspec
	mkdir -p build/examples build/metrics
	for nb in examples/*.ipynb; do \
	  start=$$(date +%s); \
	  TORCHBOOK_METRICS_DIR=$(CURDIR)/build/metrics $(VENV)/bin/jupyter nbconvert --to html --execute \
	    --ExecutePreprocessor.kernel_name=torchbook --ExecutePreprocessor.timeout=900 \
	    --output-dir build/examples "$$nb" || exit 1; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done
	@echo "Rendered notebooks: $$(ls build/examples/*.html)"
	@echo "Metrics: $$(cat build/metrics/*.json)"

# Every lock file is checked first: a stale one (fuzz/ has its own workspace) fails in seconds
# rather than after the suites before it.
test: lock-files test-prelude-cold test-rust test-python test-ui test-fuzz test-eg test-shared

# The prelude built from nothing into an empty cache by a kernel's first cell, as for a user whose
# kernel starts before any `torchbook install` built it, under a time limit (a hang fails instead
# of waiting forever). `kernelspec`'s own cold build is not the same path (no engine around it:
# an engine's rust-analyzer settings once reached the build and broke it), so it does not count.
# It costs a cold tch + runtime build (about 4 min on 2 cores), so it runs whenever what the
# prelude or its builder is made from changes, and is skipped otherwise.
COLD_PRELUDE_KEY = $(shell find runtime display kernel/src tests/cold_prelude.py Cargo.lock -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)-$(RUSTC_KEY)
test-prelude-cold: kernelspec
	@stamp=$(CACHE)/prelude-cold-ok-$(COLD_PRELUDE_KEY); \
	if [ -e $$stamp ]; then echo "cold prelude build: passed for these sources already"; exit 0; fi; \
	dir=$$(mktemp -d); start=$$(date +%s); \
	if TORCHBOOK_CACHE=$$dir JUPYTER_PATH=$(VENV)/share/jupyter TORCHBOOK_SPARE_ENGINE=0 \
	  timeout 1800 $(VENV)/bin/python tests/cold_prelude.py; then \
	  echo "cold prelude build: $$(( $$(date +%s) - start )) s"; rm -rf $$dir; touch $$stamp; \
	else code=$$?; rm -rf $$dir; echo "cold prelude build failed (exit $$code; 124: it hung past 30 min)"; exit 1; fi

# What does not fit CI's budget, run before resolving the issues that need it: 1,000,000 fuzz
# inputs per target, the container image built and run (test-image), then eight kernels at once each running a notebook with a `fit` (spares on,
# as users get them), whose wall time and peak memory go to build/load/eight-kernels.json.
test-slow: kernelspec fuzz-long test-image
	JUPYTER_PATH=$(VENV)/share/jupyter TORCHBOOK_HISTORY=$(CACHE)/test-history.jsonl \
	  $(VENV)/bin/python -m pytest -q -s tests/slow

# Chromium from Debian's package for the JupyterLab UI test; Playwright drives it and never
# downloads a browser of its own.
CHROMIUM := /usr/lib/chromium/chromium
chromium:
	@test -x $(CHROMIUM) || { apt-get install -y -q chromium >/dev/null 2>&1 || sudo -n apt-get install -y -q chromium >/dev/null 2>&1; } \
	  || { echo "cannot install Debian's chromium package (apt-get install chromium): the JupyterLab UI test needs it"; exit 1; }

# JupyterLab 4 in a real browser: one scripted session (tests/ui), screenshots in build/ui/.
test-ui: kernelspec chromium
	JUPYTER_PATH=$(VENV)/share/jupyter TORCHBOOK_HISTORY=$(CACHE)/test-history.jsonl TORCHBOOK_SPARE_ENGINE=0 \
	  CHROMIUM=$(CHROMIUM) PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(VENV)/bin/python -m pytest -q tests/ui

$(EG_VENV)/.complete:
	rm -rf $(EG_VENV)
	$(PYTHON) -m venv $(EG_VENV)
	$(EG_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-eg.txt
	touch $@

eg-venv: $(EG_VENV)/.complete

# The real Enterprise Gateway (requirements-eg.txt) starting torchbook through `torchbook launch`
# (docs/DEPLOYMENT.md): cells, interrupt, restart and delete over EG's REST API and websocket.
test-eg: kernelspec eg-venv
	TORCHBOOK_HISTORY=$(CACHE)/test-history.jsonl TORCHBOOK_SPARE_ENGINE=0 \
	  $(EG_VENV)/bin/python -m pytest -q -s tests/deploy/test_enterprise_gateway.py

# A shared install for every user (docs/DEPLOYMENT.md, "JupyterHub and shared installs"), tested
# as an unprivileged user, directly and through JupyterHub. Nothing of it may live under /root
# (mode 0700): the install goes to SHARED_DIR (the container image carries the same folder at the
# same path, so its prelude is built once for both), the hub's venv (Debian's python3, not
# pyenv's under /root: the spawned single-user server runs as the test user) and
# configurable-http-proxy (npm) to SHARED_ROOT; both are kept between runs like the cache. The
# install copies libtorch and the toolchain there once (≈ 1.9 GB) and builds its prelude when its
# key changes (minutes), else finds it.
SHARED_ROOT ?= /opt/torchbook-test
SHARED_DIR ?= /opt/torchbook
HUB_PYTHON := /usr/bin/python3
HUB_PY_VERSION = $(shell $(HUB_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
HUB_VENV = $(SHARED_ROOT)/venv-hub-$(shell cat requirements-hub.txt | sha256sum | cut -c1-16)-py$(HUB_PY_VERSION)
CHP_VERSION := 4.6.3
CHP_HOME := $(SHARED_ROOT)/configurable-http-proxy-$(CHP_VERSION)

$(HUB_VENV)/.complete:
	mkdir -p $(SHARED_ROOT) && chmod 755 $(SHARED_ROOT)
	@test -x $(HUB_PYTHON) || { apt-get install -y -q python3-venv >/dev/null 2>&1; } \
	  || { echo "cannot install Debian's python3 (the hub's venv must not depend on a python under /root)"; exit 1; }
	rm -rf $(HUB_VENV)
	$(HUB_PYTHON) -m venv $(HUB_VENV)
	$(HUB_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-hub.txt
	chmod -R a+rX,go-w $(HUB_VENV)
	touch $@

$(CHP_HOME)/.complete:
	mkdir -p $(SHARED_ROOT) && chmod 755 $(SHARED_ROOT)
	@command -v npm >/dev/null || { apt-get install -y -q nodejs npm >/dev/null 2>&1; } \
	  || { echo "cannot install Debian's nodejs and npm packages: JupyterHub's proxy needs them"; exit 1; }
	rm -rf $(CHP_HOME)
	npm install --silent --no-fund --no-audit --prefix $(CHP_HOME) configurable-http-proxy@$(CHP_VERSION)
	chmod -R a+rX,go-w $(CHP_HOME)
	touch $@

hub-venv: $(HUB_VENV)/.complete $(CHP_HOME)/.complete

# What an administrator runs (as root), into a folder every user can read.
shared-install: build
	set -o pipefail; start=$$(date +%s); \
	$(BIN) install --shared $(SHARED_DIR) --prefix $(SHARED_DIR) --libtorch $(LIBTORCH) | tee $(CACHE)/shared-install.log; \
	echo "shared install: $$(( $$(date +%s) - start )) s"

test-shared: shared-install hub-venv
	TORCHBOOK_SHARED=$(SHARED_DIR) TORCHBOOK_SHARED_PREFIX=$(SHARED_DIR) \
	  CHP=$(CHP_HOME)/node_modules/.bin/configurable-http-proxy \
	  $(HUB_VENV)/bin/python -m pytest -q -s -p no:cacheprovider tests/deploy/test_shared_install.py

# The `age` command, for the tests that exchange encrypted files with it (Debian's package).
# Gloo's headers (Debian's libgloo-dev): libtorch's ProcessGroupGloo.hpp includes them and the
# torch wheel does not ship them; c10d/build.rs compiles its shim against them.
gloo-headers:
	@test -e /usr/include/gloo/config.h || { apt-get install -y -q libgloo-dev >/dev/null 2>&1 || sudo -n apt-get install -y -q libgloo-dev >/dev/null 2>&1; } \
	  || { echo "cannot install Debian's libgloo-dev (apt-get install libgloo-dev): the c10d shim needs Gloo's headers"; exit 1; }

age-cli:
	@command -v age >/dev/null || { apt-get install -y -q age >/dev/null 2>&1 || sudo -n apt-get install -y -q age >/dev/null 2>&1; } \
	  || { echo "cannot install Debian's age package (apt-get install age): the encryption tests need the age command"; exit 1; }

# pyarrow (in the venv) writes the Parquet and Feather files the columnar loaders' tests read.
test-rust: kernelspec age-cli
	TORCHBOOK_TEST_PYTHON=$(VENV)/bin/python cargo test --$(PROFILE) --locked --workspace

test-python: kernelspec
	JUPYTER_PATH=$(VENV)/share/jupyter TORCHBOOK_HISTORY=$(CACHE)/test-history.jsonl TORCHBOOK_SPARE_ENGINE=0 \
	  $(VENV)/bin/python -m pytest -q tests/python

# Full PyTorch (CUDA wheels, ~2.7 GB) in its own venv, only for the side-by-side benchmark.
TORCH_VENV := $(CACHE)/venv-torch-$(TORCH_VERSION)
$(TORCH_VENV)/.complete:
	rm -rf $(TORCH_VENV)
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	touch $@

# GPU (on request): the full CUDA libtorch from the torch wheel and its nvidia-* wheels, a
# separate target dir (LIBTORCH changes rebuild torch-sys) and a kernelspec `torchbook-gpu`.
# The prelude loads libtorch_cuda.so itself (see runtime/src/device.rs). TORCHBOOK_NCCL=1
# builds c10d's NCCL backend (c10d/build.rs): NCCL's headers from the venv's nvidia-nccl wheel,
# CUDA's from its runtime wheel plus the crt/ and CCCL headers that wheel lacks (CUDA_HEADERS).
GPU_SITE = $(TORCH_VENV)/lib/python$(PY_VERSION)/site-packages
GPU_LIBTORCH = $(GPU_SITE)/torch
CUDA_HEADERS := $(CACHE)/cuda-headers-13.0
GPU_CUDA_INCLUDE = $(CUDA_HEADERS)/nvidia/cu13/include:$(CUDA_HEADERS)/nvidia/cu13/include/cccl:$(GPU_SITE)/nvidia/cu13/include
$(CUDA_HEADERS)/.complete:
	rm -rf $(CUDA_HEADERS).partial
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --target $(CUDA_HEADERS).partial \
	  nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
	rm -rf $(CUDA_HEADERS) && mv $(CUDA_HEADERS).partial $(CUDA_HEADERS)
	touch $@

gpu: venv gloo-headers $(TORCH_VENV)/.complete $(CUDA_HEADERS)/.complete
	LIBTORCH=$(GPU_LIBTORCH) LD_LIBRARY_PATH=$(GPU_LIBTORCH)/lib CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-cuda \
	  TORCHBOOK_NCCL=1 CUDA_INCLUDE=$(GPU_CUDA_INCLUDE) cargo build --$(PROFILE) --locked -p torchbook-kernel
	LIBTORCH=$(GPU_LIBTORCH) VIRTUAL_ENV=$(VENV) $(CARGO_TARGET_DIR)-cuda/$(PROFILE)/torchbook install --sys-prefix \
	  --name torchbook-gpu --display-name "Rust (torchbook, CUDA)" --libtorch $(GPU_LIBTORCH)

# The GPU check kit (gpu/README.md): runtime/examples/gpu_check.rs built against the device's
# libtorch (KIT_TORCH_VERSION, the torch wheel with nvidia-nccl's headers) with the NCCL path,
# in its own workspace (gpu/kit) and target dir, torch-sys's wrapper patched for that version
# (gpu/patch_torch_sys.py); packaged, stripped, with gpu/run.sh into GPU_KIT, for a machine
# with that torch and no Rust toolchain.
KIT_TORCH_VERSION := 2.11.0
KIT_NCCL_VERSION := 2.28.9
KIT_LIBTORCH_HOME := $(CACHE)/libtorch-$(KIT_TORCH_VERSION)-kit
KIT_LIBTORCH := $(KIT_LIBTORCH_HOME)/torch
KIT_TORCH_SYS := $(CACHE)/torch-sys-0.26.0-kit
KIT_TARGET_DIR := $(CACHE)/target-gpu-kit
GPU_KIT := $(CACHE)/gpu-kit
$(KIT_LIBTORCH_HOME)/.complete:
	rm -rf $(KIT_LIBTORCH_HOME).partial
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --target $(KIT_LIBTORCH_HOME).partial \
	  torch==$(KIT_TORCH_VERSION) nvidia-nccl-cu13==$(KIT_NCCL_VERSION)
	rm -rf $(KIT_LIBTORCH_HOME) && mv $(KIT_LIBTORCH_HOME).partial $(KIT_LIBTORCH_HOME)
	touch $@

$(KIT_TORCH_SYS)/.complete: gpu/patch_torch_sys.py
	cargo fetch --locked --quiet
	$(PYTHON) gpu/patch_torch_sys.py "$$(ls -d $${CARGO_HOME:-$$HOME/.cargo}/registry/src/*/torch-sys-0.26.0 | head -1)" $(KIT_TORCH_SYS)
	touch $@

gpu-kit: gloo-headers $(TORCH_VENV)/.complete $(CUDA_HEADERS)/.complete $(KIT_LIBTORCH_HOME)/.complete $(KIT_TORCH_SYS)/.complete
	cd gpu/kit && LIBTORCH=$(KIT_LIBTORCH) LD_LIBRARY_PATH=$(KIT_LIBTORCH)/lib LIBTORCH_BYPASS_VERSION_CHECK=1 \
	  TORCHBOOK_NCCL=1 CUDA_INCLUDE=$(GPU_CUDA_INCLUDE) CARGO_TARGET_DIR=$(KIT_TARGET_DIR) \
	  cargo build --release --locked --bin gpu_check --config 'patch.crates-io.torch-sys.path="$(KIT_TORCH_SYS)"'
	rm -rf $(GPU_KIT) && mkdir -p $(GPU_KIT)
	cp $(KIT_TARGET_DIR)/release/gpu_check gpu/run.sh gpu/README.md $(GPU_KIT)/
	strip $(GPU_KIT)/gpu_check
	@du -sh $(GPU_KIT) && ls -l $(GPU_KIT)

bench: bench-latency bench-fit

# The baseline: evcxr_jupyter, built once into the cache, its kernelspec (`evcxr`) kept there too.
EVCXR_VERSION := 0.22.0
EVCXR_HOME := $(CACHE)/evcxr_jupyter-$(EVCXR_VERSION)
$(EVCXR_HOME)/.complete:
	CARGO_TARGET_DIR=$(CACHE)/evcxr-target cargo install --locked --quiet evcxr_jupyter \
	  --version $(EVCXR_VERSION) --root $(EVCXR_HOME)
	touch $@

evcxr: $(EVCXR_HOME)/.complete

bench-latency: kernelspec evcxr
	JUPYTER_PATH=$(VENV)/share/jupyter $(VENV)/bin/python benches/latency.py --torchbook-kernel torchbook \
	  --evcxr-bin $(EVCXR_HOME)/bin/evcxr_jupyter --evcxr-home $(EVCXR_HOME) --libtorch $(LIBTORCH) --with-types-from-ra

bench-fit: build $(TORCH_VENV)/.complete
	cargo build --$(PROFILE) --locked -p torchbook --example fit_throughput
	$(VENV)/bin/python benches/fit_throughput.py --bench-bin $(CARGO_TARGET_DIR)/$(PROFILE)/examples/fit_throughput \
	  --python $(TORCH_VENV)/bin/python

# Time to the notebooks' target accuracy, torchbook's fit against PyTorch eager, alternating,
# medians over 3 runs (benches/time_to_accuracy.py); the table goes to docs/PERFORMANCE.md.
bench-apps: build data $(TORCH_VENV)/.complete
	cargo build --$(PROFILE) --locked -p torchbook --example time_to_accuracy
	mkdir -p build/bench
	$(PYTHON) benches/time_to_accuracy.py --bench-bin $(CARGO_TARGET_DIR)/$(PROFILE)/examples/time_to_accuracy \
	  --python $(TORCH_VENV)/bin/python --out build/bench/apps.json

# Data-parallel fit against PyTorch DDP (torchrun, gloo) at 1, 2 and 4 processes of one thread
# each, MLP and CNN of bench-fit, alternating, medians over 3 rounds (benches/ddp_throughput.py);
# the table goes to docs/PERFORMANCE.md.
bench-ddp: build $(TORCH_VENV)/.complete
	cargo build --$(PROFILE) --locked -p torchbook --example ddp_throughput
	mkdir -p build/bench
	$(PYTHON) benches/ddp_throughput.py --bench-bin $(CARGO_TARGET_DIR)/$(PROFILE)/examples/ddp_throughput \
	  --python $(TORCH_VENV)/bin/python --out build/bench/ddp.json

clean-cache:
	rm -rf $(CACHE)

# Fuzzing (docs/FUZZING.md): cargo-fuzz with libFuzzer on the stable toolchain (no sanitizer,
# `-s none`; debug assertions and overflow checks on, `-a`), in its own target dir keyed by rustc.
# `test-fuzz` (in `make test`) runs every target over its seeds and regressions, then a short
# bounded run; `fuzz-long` runs 1,000,000 inputs per target, one target at a time. Found inputs
# go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>; logs to build/fuzz/.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ_HOME := $(CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION)
CARGO_FUZZ := $(CARGO_FUZZ_HOME)/bin/cargo-fuzz
FUZZ_TARGET_DIR := $(CACHE)/fuzz-target-$(RUSTC_KEY)
FUZZ_FLAGS := -s none -a --features runtime --target-dir $(FUZZ_TARGET_DIR)
FUZZ_TARGETS := wire_frames connection_file engine_records side_channel question_mark is_complete idx csv mo image
FUZZ_SHORT := -runs=20000 -max_total_time=20
FUZZ_LONG := -runs=1000000

$(CARGO_FUZZ_HOME)/.complete:
	rm -rf $(CARGO_FUZZ_HOME) $(CARGO_FUZZ_HOME).partial
	dir=$$(mktemp -d); CARGO_TARGET_DIR=$$dir cargo install --locked --quiet cargo-fuzz \
	  --version $(CARGO_FUZZ_VERSION) --root $(CARGO_FUZZ_HOME).partial; code=$$?; rm -rf $$dir; exit $$code
	mv $(CARGO_FUZZ_HOME).partial $(CARGO_FUZZ_HOME)
	touch $@

cargo-fuzz: $(CARGO_FUZZ_HOME)/.complete

# `cargo fetch --locked` fails if a lock file is out of date (cargo-fuzz has no --locked).
lock-files:
	cargo fetch --locked --quiet
	cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml

fuzz-build: cargo-fuzz libtorch gloo-headers lock-files
	$(CARGO_FUZZ) fuzz build $(FUZZ_FLAGS)

# $(call fuzz-run,<name>,<libFuzzer options>): each target in turn over its corpus, seeds and
# regressions (all read first, every time); one line per target (runs, seconds, exec/s) in
# build/fuzz/<name>.txt, or the end of its log (with the crash input's path) on a failure.
define fuzz-run
	@mkdir -p build/fuzz; rm -f build/fuzz/$(1).txt; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; regressions=$$(test -d fuzz/regressions/$$t && echo fuzz/regressions/$$t); \
	  start=$$(date +%s.%N); \
	  if ! $(CARGO_FUZZ) fuzz run $(FUZZ_FLAGS) $$t fuzz/corpus/$$t fuzz/seeds/$$t $$regressions -- \
	      $(2) -timeout=30 -print_final_stats=1 > build/fuzz/$(1)-$$t.log 2>&1; then \
	    tail -c 6000 build/fuzz/$(1)-$$t.log; echo "fuzz target $$t failed (log: build/fuzz/$(1)-$$t.log)"; exit 1; fi; \
	  runs=$$(grep -a '^stat::number_of_executed_units:' build/fuzz/$(1)-$$t.log | awk '{print $$2}'); \
	  awk -v t=$$t -v r=$$runs -v s=$$start -v e=$$(date +%s.%N) \
	    'BEGIN { printf "%-16s %9d runs %8.1f s %9.0f exec/s\n", t, r, e - s, r / (e - s) }' \
	    | tee -a build/fuzz/$(1).txt; \
	done
endef

test-fuzz: fuzz-build
	$(call fuzz-run,short,$(FUZZ_SHORT))

fuzz-long: fuzz-build
	$(call fuzz-run,long,$(FUZZ_LONG))

# The container image (Containerfile): podman from Debian's packages, a Debian base made here with
# debootstrap (no image registry is needed), and the shared install copied in. On this machine
# (itself a container) crun fails ("cgroups in hybrid mode not supported") and podman's default
# rlimits exceed the hard limits it may set ("setrlimit `RLIMIT_NOFILE`: Operation not
# permitted"), hence runc and explicit --ulimit; host networking (no bridge needed).
IMAGE ?= localhost/torchbook:latest
# What cells need besides the install: python3 for JupyterLab, a C toolchain to link with (g++
# for libstdc++'s link library: libtorch's wrapper asks for -lstdc++). The base's tag is keyed by
# this list, so a changed list makes a new base.
IMAGE_PACKAGES := python3,python3-venv,gcc,g++,libc6-dev,ca-certificates
IMAGE_BASE ?= localhost/torchbook-base:bookworm-$(shell echo $(IMAGE_PACKAGES) | sha256sum | cut -c1-8)
DEBIAN_MIRROR ?= http://deb.debian.org/debian
PODMAN ?= podman --runtime runc
PODMAN_FLAGS ?= --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096
# pip in the build trusts the host's CA bundle (mounted, not copied: this network intercepts TLS).
HOST_CA ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt))

podman-tools:
	@{ command -v podman && command -v runc && command -v debootstrap; } >/dev/null \
	  || apt-get install -y -q podman runc debootstrap >/dev/null 2>&1 \
	  || { echo "cannot install Debian's podman, runc and debootstrap packages: make image needs them"; exit 1; }

# Made once per package list.
image-base: podman-tools
	@if $(PODMAN) image exists $(IMAGE_BASE); then echo "$(IMAGE_BASE): made before"; exit 0; fi; \
	dir=$$(mktemp -d); start=$$(date +%s); \
	if ! debootstrap --variant=minbase --include=$(IMAGE_PACKAGES) \
	    bookworm $$dir/rootfs $(DEBIAN_MIRROR) > $$dir/debootstrap.log 2>&1; then \
	  tail -20 $$dir/debootstrap.log; rm -rf $$dir; exit 1; fi; \
	tar -C $$dir/rootfs -c . | $(PODMAN) import - $(IMAGE_BASE); code=$$?; rm -rf $$dir; \
	echo "$(IMAGE_BASE): $$(( $$(date +%s) - start )) s"; exit $$code

image: shared-install image-base
	dir=$$(mktemp -d); cp Containerfile requirements-hub.txt $$dir/; start=$$(date +%s); \
	stamp=$$(cd $(SHARED_DIR) && { ls cache; stat -c '%s %Y' bin/torchbook; cat */.torchbook-copied-from; \
	  find src share -type f | LC_ALL=C sort | xargs sha256sum; } 2>/dev/null | sha256sum | cut -c1-16); \
	$(PODMAN) build $(PODMAN_FLAGS) --build-arg BASE=$(IMAGE_BASE) --build-arg TORCHBOOK_DIR=$(SHARED_DIR) \
	  --build-arg TORCHBOOK_STAMP=$$stamp \
	  $(if $(HOST_CA),-v $(HOST_CA):/run/host-ca.crt:ro --build-arg HOST_CA=/run/host-ca.crt) \
	  -v $(SHARED_DIR):/mnt/torchbook:ro -t $(IMAGE) -f $$dir/Containerfile $$dir; code=$$?; rm -rf $$dir; \
	echo "image $(IMAGE): $$(( $$(date +%s) - start )) s"; exit $$code

# The image run as a JupyterLab server (as its user jovyan), a tch cell through its REST API and
# websocket (tests/deploy/test_image.py).
test-image: image hub-venv
	IMAGE=$(IMAGE) PODMAN="$(PODMAN)" PODMAN_FLAGS="$(PODMAN_FLAGS)" TORCHBOOK_DIR=$(SHARED_DIR) \
	  $(HUB_VENV)/bin/python -m pytest -q -s -p no:cacheprovider tests/deploy/test_image.py

# Serving (docs/DEPLOYMENT.md, "Serving a trained model"): `torchbook-serve` is built by `build`
# with the workspace, and its tests (tests/serve, tests/runtime/export.rs) run in `test-rust`.
# `bench-serve` needs full PyTorch: it checks that torch.jit.load reads the runtime's
# TorchScript exports (float32 equal to the model, 16-bit within a point of its accuracy), then
# measures torchbook serve against a minimal Python server of the same file at 1, 8 and 64
# clients (docs/PERFORMANCE.md, "Serving"). Output also in build/bench/serve.txt.
.PHONY: bench-serve lock-files
bench-serve: build data $(TORCH_VENV)/.complete
	cargo build --$(PROFILE) --locked -p torchbook-serve --examples
	mkdir -p build/bench
	set -o pipefail; $(TORCH_VENV)/bin/python benches/serve_bench.py \
	  --serve-bin $(CARGO_TARGET_DIR)/$(PROFILE)/torchbook-serve --examples-dir $(CARGO_TARGET_DIR)/$(PROFILE)/examples \
	  | tee build/bench/serve.txt
