# Convenience targets over CMake; each installs missing Debian packages first.
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: deps build run test test-fast bench install clean

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build build -j$(JOBS)

# The main job: the hello playbook against this machine, state in SQLite.
run: build
	build/orch play playbooks/hello.lua

# All specs, on a normal build and under ASan+UBSan.
test:
	@scripts/test.sh

# Only the normal build's specs, for a quick loop while developing.
test-fast:
	@ORCH_SKIP_ASAN=1 scripts/test.sh

bench: build
	@bench/run.sh

install: build
	cmake --install build

clean:
	rm -rf build build-asan
