# Convenience targets over CMake. Only `deps` installs Debian packages, and
# the README's two commands, `run` and `test`, which start with it.
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: deps build run test test-fast fuzz bench install clean

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

# Regression fuzzing of every parser under ASan+UBSan for FUZZ_SECONDS
# (default 300); test.sh runs it for 45 s.
FUZZ_SECONDS ?= 300
fuzz:
	@cmake -S . -B build-asan -DORCH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  timeout $$(( $(FUZZ_SECONDS) * 3 + 30 )) build-asan/orch lua scripts/fuzz.lua $(FUZZ_SECONDS) build-asan/fuzz

bench: build
	@bench/run.sh

install: build
	cmake --install build

clean:
	rm -rf build build-asan
