# pxguard: the two quick-start commands are `make serve` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
LISTEN ?= 0.0.0.0:8443
CERT_DIR ?= certs
SCRATCH_SAN ?= .build-sanitize

.PHONY: deps build serve test test-swift check-manifests check-monitoring kubelet-test image image-check install bench fuzz fault sanitize deploy clean

# System libraries (OpenSSL 3, libyaml) through pkg-config; installed with apt when missing.
deps:
	@bash scripts/ensure-deps.sh

build: deps
	$(SWIFT) build

# Serve on the built-in defaults; development certificates are created in $(CERT_DIR)/ when missing.
serve: build
	.build/debug/pxguard serve --dev-certs --listen $(LISTEN) --cert-dir $(CERT_DIR)

# The whole test suite: unit, integration (real server, real TLS, in-test Kubernetes API),
# the offline schema check of the install bundle, and the kubelet test (the bundle's
# Deployment run from the image as a node runs it; builds the image once).
test: deps
	$(SWIFT) test 2>&1 | tee .build-test.log | grep -vE '^(\[[0-9]+/[0-9]+\]|Compiling|Building|Write|Emitting)' ; test $${PIPESTATUS[0]} -eq 0
	@bash scripts/check-manifests.sh
	@bash scripts/check-monitoring.sh
	@bash scripts/kubelet-test.sh

# The monitoring component: kustomize build, promtool check and test of every alert.
check-monitoring:
	bash scripts/check-monitoring.sh

# The kubelet test alone (needs root: mount and network namespaces).
kubelet-test: deps
	bash scripts/kubelet-test.sh

# OCI image archive from the release binary: .build/image/pxguard-VERSION.oci.tar.
image: deps
	bash scripts/image.sh

# The archive read by skopeo (OCI and Docker layouts) and loaded by podman; installs both with apt.
image-check: image
	bash scripts/image-check.sh

# Install or upgrade in the current kubectl context with self-managed certificates
# (kept in pxguard-certs/); see README "Install".
install: image
	bash scripts/install.sh

# Regenerate deploy/ from the default configuration (a test keeps them equal; deploy/base
# is what `kubectl kustomize deploy` builds).
deploy: build
	.build/debug/pxguard render all > deploy/base/pxguard.yaml
	.build/debug/pxguard render iptables > deploy/node-iptables.sh
	chmod +x deploy/node-iptables.sh

bench: deps
	bash bench/run.sh

fuzz: deps
	bash fuzz/run.sh $${FUZZ_SECONDS:-60}

fault: deps
	bash scripts/fault.sh

sanitize: deps
	bash scripts/sanitize.sh

clean:
	rm -rf .build .build-*
