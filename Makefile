# Convenience targets over CMake. Only `deps` installs Debian packages, and
# the README's two commands, `run` and `test`, which start with it.
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: deps build run test test-fast bench install clean

deps:
	@scripts/deps.sh

build:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build build -j$(JOBS)

# The main job: the hello playbook against this machine, state in SQLite.
# deps, then build: in that order even under make -j.
run: deps
	@$(MAKE) --no-print-directory build
	build/orch play playbooks/hello.lua

# All specs, on a normal build and under ASan+UBSan (test.sh runs deps.sh).
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
