# The two commands in README.md: `make demo` (main job on the embedded default) and `make test`.
# Both install what they need first (scripts/setup is idempotent and quiet when nothing is missing).
.PHONY: setup samples models build release test demo

setup:
	@scripts/setup

samples: setup
	@scripts/fetch-samples

models: setup
	@scripts/fetch-models

build: setup
	swift build

release: setup
	swift build -c release $(SWIFT_BUILD_FLAGS)

test: samples models
	scripts/test

demo: release
	scripts/demo
