# Front door for newcomers: `make demo` and `make check` (see README.md). CMake does the build;
# this file only sequences the dependency script, the build directories and the test runs.
BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
ifneq ($(CI),)
CMAKE_ARGS += -DKDH_WERROR=ON
endif

.PHONY: all deps build check test demo soak bench clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake -S . -B $(BUILD) $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The whole suite: unit, integration and short soak tests, the same under ASan+UBSan, then a
# short run of every fuzz harness.
check: build
	scripts/check "$(BUILD)" "$(FUZZ_BUILD)" "$(JOBS)"

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Every reliability scenario against kdsim at full length (about 20 minutes), with a results table.
soak: build
	scripts/soak "$(BUILD)"

demo: build
	$(BUILD)/src/cli/kdharvest demo

# Every benchmark at full size, with its baseline measured in the same run (BUILD/bench.txt).
bench: build
	scripts/bench "$(BUILD)"

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) build-asan
