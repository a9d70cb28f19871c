# parallel: build, test and measure. Overridable: CC CFLAGS LUA LUA_INCDIR.
CC         ?= gcc
LUA        ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
CFLAGS     ?= -O2 -g
PREFIX     ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/5.4
LUA_SHAREDIR ?= $(PREFIX)/share/lua/5.4

WARN = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
       -Wmissing-prototypes -Wno-unused-parameter
# -fno-plt: calls into the Lua API (several per element sent, per method
# called) go straight through the GOT; about 7% off both here.
NOPLT ?= -fno-plt
BASE_CFLAGS = -std=c11 -pthread -fPIC -fvisibility=hidden $(NOPLT) $(WARN) -I$(LUA_INCDIR) -Isrc -Iinclude

SRC  = $(wildcard src/core/*.c) $(wildcard src/codec/*.c) $(wildcard src/wire/*.c) $(wildcard src/process/*.c) $(wildcard src/lua/*.c)
HDR  = $(wildcard src/*/*.h) $(wildcard include/*.h)

BUILD ?= build
SO    = $(BUILD)/parallel/core.so
LIBA  = $(BUILD)/libparallel.a
# The program process pools start for their workers, beside core.so.
WORKER = $(BUILD)/parallel/parallel-worker

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

# Debian's busted script starts Lua 5.1; running it with lua5.4 directly also
# keeps sanitizer runtimes (LD_PRELOAD) in the one process that runs the specs.
BUSTED = $(LUA) $$(command -v busted)
# SPEC=spec/queue_spec.lua runs one file (make test, asan, stress).
SPEC ?= spec

.PHONY: all deps test run bench bench-load examples asan tsan valgrind install clean stress

all: $(SO) $(LIBA) $(WORKER)

$(SO): $(SRC) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ $(SRC) $(LDFLAGS) -lm

$(LIBA): $(SRC) $(HDR) Makefile
	@mkdir -p $(BUILD)/obj
	cd $(BUILD)/obj && for f in $(SRC); do \
	  $(CC) $(BASE_CFLAGS) -I$(CURDIR)/src -I$(CURDIR)/include $(CFLAGS) -c $(CURDIR)/$$f -o $$(echo $$f | tr / _ | sed 's/\.c$$/.o/') || exit 1; done
	ar rcs $@ $(BUILD)/obj/*.o

$(WORKER): src/bin/parallel-worker.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ src/bin/parallel-worker.c $(LIBA) $(LDFLAGS) $(EMBED_LIBS) -lm

# Installs what a fresh Debian machine lacks (as root), once.
deps:
	@sh tools/deps.sh

test: deps all crashlib test-core test-wire docs-test
	$(BUSTED) --exclude-tags=stress $(SPEC)

stress: deps all
	$(BUSTED) --tags=stress $(SPEC)

run: deps all
	$(LUA) examples/tour.lua

bench: deps all
	@command -v gnuplot >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq gnuplot-nox >/dev/null; }
	$(LUA) bench/run.lua

# Only the load mode (bench/load.lua): issue 12's figures, quiet and under
# load, ending in the Markdown table it also writes to build/bench-targets.md.
bench-load: deps all
	$(LUA) bench/load.lua

examples: deps all
	@for f in examples/[0-9]*.lua; do echo "== $$f"; $(LUA) $$f || exit 1; done

asan: deps
	$(MAKE) BUILD=build-asan CORE_TEST_FLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test-core test-wire
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" LDFLAGS="-fsanitize=address,undefined" build-asan/parallel/core.so build-asan/parallel/parallel-worker
	LUA_CPATH="$(CURDIR)/build-asan/?.so;;" LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 $(BUSTED) --exclude-tags=stress $(SPEC)

# Specs tagged #child start child processes: under ThreadSanitizer a
# forked child crashes before exec, so they run in the other builds only.
# One process per spec file: a long-lived process exhausts TSan's epochs,
# and its reset of the shadow memory can then fail on this machine ("failed
# to allocate" a 540 TB mapping: the runtime, not a report). A file whose
# run ended that way, with no report, runs again (up to three times); any
# ThreadSanitizer report fails at once.
TSAN_RUN = LUA_CPATH="$(CURDIR)/build-tsan/?.so;;" LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
  TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp halt_on_error=1 report_signal_unsafe=0 allocator_may_return_null=1" \
  $(BUSTED) -o TAP --exclude-tags=stress,child
tsan: deps
	$(MAKE) BUILD=build-tsan CORE_TEST_FLAGS="-O1 -g -fsanitize=thread" test-core test-wire
	$(MAKE) BUILD=build-tsan CFLAGS="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" build-tsan/parallel/core.so build-tsan/parallel/parallel-worker
	@for f in $$(if [ -d $(SPEC) ]; then ls $(SPEC)/*_spec.lua; else echo $(SPEC); fi); do \
	  for try in 1 2 3; do \
	    if $(TSAN_RUN) $$f > build-tsan/last.log 2>&1; then ok=1; break; fi; ok=0; \
	    grep -q "WARNING: ThreadSanitizer" build-tsan/last.log && break; \
	    grep -q "ThreadSanitizer failed to allocate" build-tsan/last.log || break; \
	    echo "tsan: $$f: the runtime failed to reset its shadow memory; again"; \
	  done; \
	  [ $$ok = 1 ] || { cat build-tsan/last.log; echo "tsan: $$f failed"; exit 1; }; \
	  echo "tsan: $$f: $$(grep -c '^ok' build-tsan/last.log) passed"; \
	done

# Memcheck on lua5.4 running busted: memory errors, and blocks definitely
# lost, fail. Slow: VALGRIND_SPECS picks the spec files (default: a subset
# that finishes in a few minutes); #child specs fork and are left out.
VALGRIND_SPECS ?= spec/codec_spec.lua spec/queue_spec.lua spec/pipe_spec.lua spec/future_spec.lua \
                  spec/lock_spec.lua spec/sync_spec.lua spec/dict_spec.lua spec/array_spec.lua \
                  spec/value_spec.lua spec/interrupt_spec.lua
valgrind: deps all
	valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	  --suppressions=$(CURDIR)/tools/valgrind.supp $(LUA) $$(command -v busted) --exclude-tags=stress,child $(VALGRIND_SPECS)

install: all
	install -d $(DESTDIR)$(LUA_LIBDIR)/parallel $(DESTDIR)$(LUA_SHAREDIR)/parallel
	install -m 755 $(SO) $(DESTDIR)$(LUA_LIBDIR)/parallel/core.so
	install -m 755 $(WORKER) $(DESTDIR)$(LUA_LIBDIR)/parallel/parallel-worker
	install -m 644 lua/parallel/*.lua $(DESTDIR)$(LUA_SHAREDIR)/parallel/

clean:
	rm -rf build build-asan build-tsan build-fuzz docs

# --- Embedding (issue 6): a C host linking libparallel.a statically ----------
EMBED_LIBS ?= -llua5.4
EMBED = $(BUILD)/embed/host

$(EMBED): examples/embed/host.c include/parallel.h $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -pthread $(WARN) -I$(LUA_INCDIR) -Iinclude $(CFLAGS) -o $@ examples/embed/host.c $(LIBA) $(EMBED_LIBS) -lm

embed: deps all $(EMBED)
	$(EMBED) examples/embed/script.lua $(CURDIR)/lua

.PHONY: embed

# poll(2) for spec/fd_spec.lua (no lua-posix for Lua 5.4 on Debian bookworm).
FDPOLL = build/test/fdpoll.so
$(FDPOLL): spec/fdpoll.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ spec/fdpoll.c

fdpoll: $(FDPOLL)

.PHONY: fdpoll

# Ways for a worker process to die, for spec/process_spec.lua.
CRASHLIB = build/test/crash.so
$(CRASHLIB): spec/crash.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ spec/crash.c

crashlib: $(CRASHLIB)

# A host that opens and closes Lua states using parallel, for spec/lifecycle_fd_spec.lua.
CYCLE = build/test/cycle
$(CYCLE): spec/cycle.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) -I$(LUA_INCDIR) $(CFLAGS) -o $@ spec/cycle.c $(EMBED_LIBS)
# After both are defined: a prerequisite list is expanded where it stands
# (here before, $(CRASHLIB) was empty and a fresh checkout's make asan
# failed two process specs for want of crash.so).
test stress asan tsan valgrind test-process: $(FDPOLL) $(CRASHLIB) $(CYCLE)

# The spec files about pools again, with every pool the specs make a
# process pool (spec/support.lua reads PARALLEL_TEST_BACKEND); tests of
# what only threads have are tagged #threads.
PROCESS_SPECS ?= spec/pool_spec.lua spec/future_spec.lua spec/fd_spec.lua spec/interrupt_spec.lua \
                 spec/process_spec.lua spec/recycle_spec.lua spec/hostile_spec.lua
test-process: deps all
	PARALLEL_TEST_BACKEND=process $(BUSTED) --exclude-tags=stress,threads $(PROCESS_SPECS)

.PHONY: crashlib test-process

# Packaging: lint the rockspecs, install into a temporary tree, run against it.
rock-check:
	sh tools/check-rockspec.sh

.PHONY: rock-check

# --- Hardening (issue 5): fuzzing the codec, soak -----------------------------
# make fuzz [FUZZ_SECONDS=60]: libFuzzer (clang) with ASan/UBSan/LSan on
# fuzz/fuzz_codec.c and the project's sources; the corpus grows in
# build-fuzz/corpus, crashing inputs land in build-fuzz/. Then
# fuzz/fuzz_wire.c (the wire layer's rebuild of hostile bytes) as long, its
# corpus in build-fuzz/corpus-wire.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ = $(patsubst %.c,build-fuzz/obj/%.o,$(SRC))
FUZZER = build-fuzz/fuzz_codec
FUZZER_WIRE = build-fuzz/fuzz_wire
FUZZ_DEFS ?=

build-fuzz/obj/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZER): fuzz/fuzz_codec.c $(FUZZ_OBJ) Makefile
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) $(FUZZ_DEFS) -fsanitize=fuzzer -o $@ fuzz/fuzz_codec.c $(FUZZ_OBJ) -llua5.4 -lm

$(FUZZER_WIRE): fuzz/fuzz_wire.c $(FUZZ_OBJ) Makefile
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) $(FUZZ_DEFS) -fsanitize=fuzzer -o $@ fuzz/fuzz_wire.c $(FUZZ_OBJ) -llua5.4 -lm

fuzz-deps:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 && [ -n "$$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-dev >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZER)
	@mkdir -p build-fuzz/corpus
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
	  $(FUZZER) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
	  -print_final_stats=1 -artifact_prefix=build-fuzz/ build-fuzz/corpus
	@$(MAKE) --no-print-directory $(FUZZER_WIRE)
	@mkdir -p build-fuzz/corpus-wire
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
	  $(FUZZER_WIRE) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
	  -print_final_stats=1 -artifact_prefix=build-fuzz/wire- build-fuzz/corpus-wire

.PHONY: fuzz fuzz-deps

# The reference (LDoc, from doc/) into docs/ (git-ignored). LDoc runs
# under Lua 5.1, where Debian's Markdown formatter for it lives; its log is
# kept for docs-check, which fails on any warning it printed.
LDOC ?= /usr/bin/ldoc

docs-deps:
	@sh tools/docs-deps.sh

docs: docs-deps
	@rm -rf docs && mkdir -p build/doc
	lua5.1 $(LDOC) . > build/doc/ldoc.log 2>&1 || { cat build/doc/ldoc.log; exit 1; }
	@cat build/doc/ldoc.log
	$(LUA) tools/docs-index.lua config.ld docs/index.html

# The reference against the code: every function and method the module
# registers, every option it checks, the README's API names, every example,
# rendered Markdown and nothing internal (tools/docs-check.lua). make test
# runs it too (docs-test), there with the names of ../shared/API.md (a
# file outside the repository) reported but not failing.
docs-check: all docs
	DOCS_API_STRICT=1 $(LUA) tools/docs-check.lua

docs-test: all docs
	$(LUA) tools/docs-check.lua

.PHONY: docs docs-deps docs-check docs-test

# 1,000,000 tasks through one pool; resident memory before and after.
soak: deps all
	$(LUA) bench/soak.lua

.PHONY: soak

# --- C unit tests of the core (issue 13): src/core alone, no Lua ---------------
CORE_SRC = $(wildcard src/core/*.c)
CORE_TESTS = $(patsubst tests/core/%.c,$(BUILD)/tests/%,$(wildcard tests/core/test_*.c))
CORE_TEST_FLAGS ?= $(CFLAGS)

$(BUILD)/tests/%: tests/core/%.c $(CORE_SRC) $(wildcard src/core/*.h) tests/core/check.h tests/core/msgutil.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -pthread $(WARN) -Wno-missing-prototypes -Isrc $(CORE_TEST_FLAGS) -o $@ $< $(CORE_SRC) $(LDFLAGS) -lm

test-core: $(CORE_TESTS)
	@for t in $(CORE_TESTS); do $$t || exit 1; done

.PHONY: test-core

# --- C tests of the wire layer's channel (issue 13): no Lua --------------------
WIRE_TESTS = $(patsubst tests/wire/%.c,$(BUILD)/tests/wire_%,$(wildcard tests/wire/test_*.c))

$(BUILD)/tests/wire_%: tests/wire/%.c src/wire/chan.c src/wire/wire.h tests/core/check.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -pthread $(WARN) -Wno-missing-prototypes -Isrc -Itests/core $(CORE_TEST_FLAGS) -o $@ $< src/wire/chan.c $(LDFLAGS)

test-wire: $(WIRE_TESTS)
	@for t in $(WIRE_TESTS); do $$t || exit 1; done

.PHONY: test-wire

# --- MPI (issue 15): the optional parallel.mpi module, built with mpicc -------
# make mpi [MPICC=mpicc.mpich]: $(BUILD)/parallel/mpi.so beside core.so. The
# main module never depends on MPI. make test-mpi builds one module per MPI
# implementation (build/mpi-openmpi, build/mpi-mpich) and runs the MPI specs
# under each launcher, then the fail-stop test.
MPICC ?= mpicc
MPI_SRC = $(wildcard src/mpi/*.c)
MPI_HDR = $(wildcard src/mpi/*.h) src/lua/capi.h

mpi-deps:
	@sh tools/mpi-deps.sh

mpi: deps mpi-deps all mpi-module

# The module alone, installing nothing (the parallel-mpi rock's build).
mpi-module: $(BUILD)/parallel/mpi.so

$(BUILD)/parallel/mpi.so: $(MPI_SRC) $(MPI_HDR) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(MPICC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ $(MPI_SRC) -ldl

install-mpi: mpi-module
	install -d $(DESTDIR)$(LUA_LIBDIR)/parallel
	install -m 755 $(BUILD)/parallel/mpi.so $(DESTDIR)$(LUA_LIBDIR)/parallel/mpi.so

build/mpi-%/parallel/mpi.so: $(MPI_SRC) $(MPI_HDR) $(HDR) Makefile
	@mkdir -p $(dir $@)
	mpicc.$* $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ $(MPI_SRC) -ldl

# A module whose fingerprint differs, for the mixed-ranks test.
build/mpi-fptest-%/parallel/mpi.so: $(MPI_SRC) $(MPI_HDR) $(HDR) Makefile
	@mkdir -p $(dir $@)
	mpicc.$* $(BASE_CFLAGS) $(CFLAGS) '-DMPI_FP_EXTRA="; test build"' -DMPI_TEST_HOOKS -shared -o $@ $(MPI_SRC) -ldl

MPI_IMPLS ?= openmpi mpich
test-mpi: deps mpi-deps all $(FDPOLL)
	@for i in $(MPI_IMPLS); do $(MAKE) --no-print-directory build/mpi-$$i/parallel/mpi.so build/mpi-fptest-$$i/parallel/mpi.so || exit 1; done
	@for i in $(MPI_IMPLS); do sh tools/mpi-test.sh $$i || exit 1; done

# The MPI specs across three simulated hosts (network namespaces, as root).
test-cluster: deps mpi-deps all $(FDPOLL)
	@for i in $(MPI_IMPLS); do $(MAKE) --no-print-directory build/mpi-$$i/parallel/mpi.so || exit 1; done
	@for i in $(MPI_IMPLS); do sh tools/mpi-cluster.sh $$i || exit 1; done

# The MPI backend beside mpi4py.futures (Debian's python3-mpi4py), same run.
bench-mpi: deps all
	@sh tools/mpi-deps.sh bench
	@for i in $(MPI_IMPLS); do $(MAKE) --no-print-directory build/mpi-$$i/parallel/mpi.so || exit 1; done
	@sh tools/mpi-bench.sh

.PHONY: mpi mpi-deps mpi-module install-mpi test-mpi test-cluster bench-mpi
