# Tether: one non-recursive GNU Makefile.
#
#   make            every binary, optimised, in build/release/bin
#   make test       dependencies, sanitizer build (ASan + UBSan), every test;
#                   the last line printed is "N passed, N failed"
#   make run        dependencies, build, local stores in ./var, the whole tree
#   make bench      benchmarks (build/release)
#   make chaos      the chaos suite, long form (CHAOS_SECONDS=300; docs/chaos.md)
#   make docs       regenerate docs/config.md and docs/protocol.md
#   make format     clang-format every C file
#   make clean
#
# MODE=asan builds the sanitizer variant into build/asan; V=1 shows commands.

MODE ?= release
BUILD ?= build/$(MODE)
CC ?= gcc

ifeq ($(V),1)
Q :=
else
Q := @
endif

# snprintf into fixed buffers truncates on purpose (bounded by design), hence no -Wformat-truncation.
WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wvla -Wimplicit-fallthrough -Werror=implicit-function-declaration \
        -Wno-format-truncation
PKG_CFLAGS := $(shell pkg-config --cflags libpq hiredis libcurl 2>/dev/null)
CPPFLAGS := -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -Iproto -Iactors/lib $(PKG_CFLAGS) -MMD -MP

ifeq ($(MODE),asan)
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
       -DTETHER_TEST
LDSAN := -fsanitize=address,undefined
else
OPT := -O2 -g
LDSAN :=
endif

CFLAGS := $(WARN) $(OPT)
LDFLAGS := $(LDSAN)

LIBS_CORE := -lnng -lmsgpackc -lpthread
LIBS_STORE := $(shell pkg-config --libs libpq hiredis libcurl 2>/dev/null || echo -lpq -lhiredis -lcurl)
LIBS_GW := -lh2o-evloop -lnghttp2 -ljwt -ljansson -lssl -lcrypto -lz
LIBS_SV := -ljansson
LIBS_ECHO := $(shell pkg-config --libs libcurl jansson 2>/dev/null || echo -lcurl -ljansson) -lpthread

# ---- sources ----
PROTO_SRC := $(wildcard proto/*.c)
RTLIB_SRC := $(wildcard actors/lib/*.c)
ACTOR_DIRS := $(patsubst actors/%/main.c,%,$(wildcard actors/*/main.c))
ACTOR_BINS := $(foreach a,$(ACTOR_DIRS),$(BUILD)/bin/$(subst _,-,$(a)))
GW_SRC := $(wildcard gateway/*.c)
SV_SRC := $(wildcard supervisor/*.c)
CTL_SRC := $(wildcard supervisor/tetherctl/*.c)
ECHO_SRC := $(wildcard examples/echo-agent/*.c)
UNIT_SRC := $(shell find tests/unit -name '*_test.c' 2>/dev/null)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
DRIVER_SRC := $(wildcard tests/drivers/*.c)
DRIVER_BINS := $(patsubst tests/drivers/%.c,$(BUILD)/drivers/%,$(DRIVER_SRC))
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIBTETHER := $(BUILD)/libtether.a

BINS := $(ACTOR_BINS) $(BUILD)/bin/gateway $(BUILD)/bin/supervisor $(BUILD)/bin/tetherctl \
        $(BUILD)/bin/echo-agent

.PHONY: all test unit itest run bench chaos docs format clean deps check
.DEFAULT_GOAL := all

all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIBTETHER): $(call obj,$(PROTO_SRC) $(RTLIB_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

# actors/<dir>/main.c -> bin/<dir with - for _>
define actor_rule
$(BUILD)/bin/$(subst _,-,$(1)): $(call obj,$(wildcard actors/$(1)/*.c)) $(LIBTETHER)
	@mkdir -p $$(dir $$@)
	$(if $(Q),@echo "  LD      $$@")
	$(Q)$(CC) $(LDFLAGS) -o $$@ $$^ $(LIBS_STORE) $(LIBS_CORE)
endef
$(foreach a,$(ACTOR_DIRS),$(eval $(call actor_rule,$(a))))

$(BUILD)/bin/gateway: $(call obj,$(GW_SRC)) $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_GW) $(LIBS_STORE) $(LIBS_CORE)

# console.c assembles the page in (.incbin), which the compiler's -MMD does not see
$(call obj,gateway/console.c): gateway/console/index.html

$(BUILD)/bin/supervisor: $(call obj,$(SV_SRC)) $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_SV) $(LIBS_STORE) $(LIBS_CORE)

$(BUILD)/bin/tetherctl: $(call obj,$(CTL_SRC)) $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_STORE) $(LIBS_CORE)

# An example worker: standalone, so it links no Tether code (see examples/echo-agent/README.md).
$(BUILD)/bin/echo-agent: $(call obj,$(ECHO_SRC))
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ECHO)

# The gateway's objects but main.c: for the fuzz targets, and the unit tests that need the whole
# gateway (UNIT_LIBS_<test>).
LIBGW := $(BUILD)/libgw.a
$(LIBGW): $(call obj,$(filter-out gateway/main.c,$(GW_SRC)))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

UNIT_LIBS_gateway/routes_test := $(LIBGW)
$(BUILD)/tests/gateway/routes_test: $(LIBGW)

# Unit tests may #include the .c under test to reach statics; they link the library too.
$(BUILD)/tests/%: tests/unit/%.c $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests/lib $(CFLAGS) $(LDFLAGS) -o $@ $< $(UNIT_LIBS_$*) $(LIBTETHER) \
		$(LIBS_GW) $(LIBS_STORE) $(LIBS_CORE)

# Programs the integration tests drive (they need a running tree, so they are no unit tests).
$(BUILD)/drivers/%: tests/drivers/%.c $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  DRIVER  $@")
	$(Q)$(CC) $(CPPFLAGS) -Itests/lib $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBTETHER) \
		$(LIBS_STORE) $(LIBS_CORE)

$(BUILD)/bench/%: tests/bench/%.c $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) -Itests/lib $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBTETHER) \
		$(LIBS_STORE) $(LIBS_CORE)

deps:
	$(Q)compose/deps.sh

# The sanitizer build is what the tests run against.
test: deps
	$(Q)$(MAKE) --no-print-directory MODE=asan all unit-bins
	$(Q)tests/run.sh build/asan

unit-bins: $(UNIT_BINS) $(BENCH_BINS) $(DRIVER_BINS)

run: deps
	$(Q)$(MAKE) --no-print-directory MODE=release all
	$(Q)compose/run.sh build/release

# The chaos suite's long form (docs/chaos.md): CHAOS_SECONDS of load (default 300) under the
# nemesis, on the sanitizer build; CHAOS_SEED replays a run's workload.
CHAOS_SECONDS ?= 300
chaos: deps
	$(Q)$(MAKE) --no-print-directory MODE=asan all
	$(Q)tests/chaos/chaos.sh build/asan --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

bench: deps
	$(Q)$(MAKE) --no-print-directory MODE=release all unit-bins
	$(Q)tests/bench/run.sh build/release

docs: all
	$(Q)tests/lib/gen-docs.sh $(BUILD)/bin

format:
	$(Q)clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

# ==== fuzzing (tests/fuzz/README.md) =========================================================
# make fuzz        every libFuzzer target tests/fuzz/*_fuzz.c, built with clang into build/fuzz and
#                  run one after the other for TETHER_FUZZ_RUNS executions each (default 10^7) on
#                  its seeds; corpora stay in build/fuzz/corpus/<target>, crash inputs go to
#                  build/fuzz/crashes/; exits non-zero on a crash
# make fuzz-bins   only builds them (tests/fuzz/run.sh, the short run of the test suite, does this)
# The product code is compiled again for this (MODE=fuzz: -fsanitize=fuzzer-no-link, address,
# undefined), into build/fuzz only. gateway/main.c stays out: a target is its own main.
TETHER_FUZZ_RUNS ?= 10000000
FUZZ_SRC := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/%,$(FUZZ_SRC))
.PHONY: fuzz fuzz-bins

ifeq ($(MODE),fuzz)
# clang 14 neither honours gcc's "fall through" comments nor knows -Wno-format-truncation; the
# fuzz targets themselves are built with both warnings' intent kept (they have no fall-through)
CFLAGS := $(filter-out -Wimplicit-fallthrough -Wno-format-truncation,$(WARN)) -O1 -g \
          -fno-omit-frame-pointer -fno-sanitize-recover=all -fsanitize=fuzzer-no-link,address,undefined
# request_fuzz drives the whole pipeline; the bus under it is the target's own (tests/fuzz/README.md)
FUZZ_LD_request_fuzz := -Wl,--wrap=bus_call -Wl,--wrap=bus_sub_open_actor -Wl,--wrap=bus_cluster_view

$(BUILD)/%_fuzz: tests/fuzz/%_fuzz.c tests/fuzz/fuzz.h $(LIBGW) $(LIBTETHER)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  FUZZ    $@")
	$(Q)$(CC) $(CPPFLAGS) -Igateway -Itests/fuzz $(CFLAGS) -fsanitize=fuzzer,address,undefined \
		$(FUZZ_LD_$*_fuzz) -o $@ $< $(LIBGW) $(LIBTETHER) $(LIBS_GW) $(LIBS_STORE) $(LIBS_CORE) -ldl

fuzz-bins: $(FUZZ_BINS)
	@:
else
fuzz-bins:
	$(Q)$(MAKE) --no-print-directory MODE=fuzz BUILD=build/fuzz CC=clang fuzz-bins
endif

fuzz: fuzz-bins
	$(Q)tests/fuzz/run.sh --runs $(TETHER_FUZZ_RUNS)
# ==== end of fuzzing ===========================================================================

-include $(shell find build -name '*.d' 2>/dev/null)
