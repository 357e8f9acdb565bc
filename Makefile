# p11enroll: one plain Makefile, pkg-config for every library.
#   make              build/p11enroll
#   make check        install test packages, unit + integration tests, then again under ASan+UBSan
#   make demo         install packages, enroll a SoftHSM key against a local scepserver, tear down
#   make bench        benchmark against scepclient (figures, not assertions), the
#                     provisioning station (tests/bench-station.sh), then `fleet`
#   make fleet        10,000-agent simulation of the real renewal scheduling (peak vs mean)
#   make install      PREFIX=/usr/local DESTDIR=
#   make format / format-check

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec/p11enroll
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DESTDIR ?=
BUILD ?= build
VERSION := 0.1.0

CC ?= cc
# p11enroll links OpenSSL, and libseccomp for its token process's filter (tokens/tokconfine.c);
# libcurl is the network process's alone (p11enroll-net: agent/netmain.c and NET_SRC).
PKGS := openssl libcurl libseccomp
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) p11-kit-1 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs openssl libseccomp 2>/dev/null)
NET_PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes
CFLAGS ?= -O2 -g
# UBSan's runtime is linked in statically: as a shared library beside ASan's it brings 6 MB
# of zeroed globals (a stack depot of its own) that LeakSanitizer scans at every exit:
# 20 ms of CPU a process here (`p11enroll --version` 64 ms, 44 ms with it linked in).
ifeq ($(SAN),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined -static-libubsan
endif
ALL_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) \
	-Iinclude $(PKG_CFLAGS) -DP11E_VERSION='"$(VERSION)"' -DP11E_SYSCONFDIR='"$(SYSCONFDIR)"' \
	-DP11E_LIBEXECDIR='"$(LIBEXECDIR)"'
LIBS := $(PKG_LIBS) -ldl
NET_LIBS := $(NET_PKG_LIBS) -ldl

NET_SRC := agent/http_curl.c agent/netproc_serve.c agent/netproc_confine.c
NET_OBJ := $(NET_SRC:%.c=$(BUILD)/%.o)
LIB_SRC := $(filter-out agent/main.c agent/netmain.c $(NET_SRC),$(wildcard agent/*.c)) \
	$(wildcard tokens/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: FORCE all check unit doubles integration demo bench fleet install format format-check clean deps test-deps

all: $(BUILD)/p11enroll $(BUILD)/p11enroll-net

# Layers enforced by the compiler: tokens/ sees include/ and itself, never agent/;
# agent/ sees include/ and itself, never tokens/' private headers.
$(BUILD)/tokens/%.o: tokens/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -Itokens -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -Iagent -c -o $@ $<

-include $(LIB_OBJ:.o=.d) $(NET_OBJ:.o=.d) $(BUILD)/agent/main.d $(BUILD)/agent/netmain.d

$(BUILD)/libp11enroll.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libp11enroll-net.a: $(NET_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/p11enroll: $(BUILD)/agent/main.o $(BUILD)/libp11enroll.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The network process, started by p11enroll (agent/netproc.h): installed in LIBEXECDIR,
# found beside p11enroll first (this build tree). netproc.c has LIBEXECDIR compiled in: it
# is rebuilt when LIBEXECDIR (or PREFIX) changes, so `make install PREFIX=/usr` installs a
# p11enroll that looks where p11enroll-net went.
$(BUILD)/agent/netproc.o: $(BUILD)/libexecdir.stamp
$(BUILD)/libexecdir.stamp: FORCE
	@mkdir -p $(dir $@); echo '$(LIBEXECDIR)' | cmp -s - $@ || echo '$(LIBEXECDIR)' >$@

$(BUILD)/p11enroll-net: $(BUILD)/agent/netmain.o $(BUILD)/libp11enroll-net.a $(BUILD)/libp11enroll.a
	$(CC) $(LDFLAGS) -o $@ $^ $(NET_LIBS)

# The tests' own build of the program: its network process tries to break out of its
# confinement when P11E_TEST_NETPROC_TRY says so (t-privsep.sh). p11enroll-testhooks is
# p11enroll; it starts the p11enroll-net beside it, which has the hooks. Never installed.
TESTHOOKS := $(BUILD)/tests/p11enroll-testhooks
TESTHOOKS_NET := $(BUILD)/tests/p11enroll-net
$(BUILD)/tests/netproc-testhooks.o: agent/netproc_confine.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DP11E_TEST_HOOKS -MMD -MP -Iagent -c -o $@ $<
-include $(BUILD)/tests/netproc-testhooks.d
$(TESTHOOKS_NET): $(BUILD)/agent/netmain.o $(BUILD)/tests/netproc-testhooks.o \
		$(BUILD)/libp11enroll-net.a $(BUILD)/libp11enroll.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NET_LIBS)
# and its own side of the network process: a card of the station that dies right after a
# request (P11E_TEST_CARD_DIES, t-provision.sh)
$(BUILD)/tests/netclient-testhooks.o: agent/netproc.c $(BUILD)/libexecdir.stamp
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DP11E_TEST_HOOKS -MMD -MP -Iagent -c -o $@ $<
-include $(BUILD)/tests/netclient-testhooks.d
$(TESTHOOKS): $(BUILD)/agent/main.o $(BUILD)/tests/netclient-testhooks.o $(BUILD)/libp11enroll.a \
		| $(TESTHOOKS_NET)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libp11enroll.a $(BUILD)/libp11enroll-net.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -Iagent -Itokens $(LDFLAGS) -o $@ $< $(BUILD)/libp11enroll-net.a $(BUILD)/libp11enroll.a $(NET_LIBS) $(CMOCKA_LIBS)

-include $(UNIT_BIN:=.d)

deps:
	tests/install-deps.sh build
test-deps:
	tests/install-deps.sh test

# Older OpenSSL builds side by side (tests/old-openssl.sh: apt-get download, never
# installed): the trust directory must verify with their `openssl verify -CApath` too.
OLD_OPENSSL_DIR ?= build/old-openssl
# Asked every time (about 1 s when cached): an upgrade changes which builds are older.
$(BUILD)/old-openssl.list: FORCE
	@mkdir -p $(dir $@)
	tests/old-openssl.sh $(OLD_OPENSSL_DIR) >$@.tmp && mv $@.tmp $@

unit: $(UNIT_BIN) $(BUILD)/old-openssl.list $(BUILD)/tests/fault-pkcs11.so
	@bins=$$(tr '\n' : <$(BUILD)/old-openssl.list); rc=0; for t in $(UNIT_BIN); do \
		echo "== $$t"; P11E_OPENSSL_BINS=$$bins P11E_TEST_DATA=tests/data \
		P11E_FAULT_MODULE=$(BUILD)/tests/fault-pkcs11.so $$t || rc=1; \
	done; exit $$rc

# A PKCS#11 module of the tests' own that wraps SoftHSM and injects faults (PIN counter
# flags, token removal, SIGKILL at a call), an LD_PRELOAD shim that SIGKILLs in the
# middle of file writes, and one that hands SoftHSM RSA-2048 keys made beforehand
# (tests/fault/softhsm-rsa-pool.pem); never sanitized, since other tools load them too.
FAULT_SO := $(BUILD)/tests/fault-pkcs11.so
FAULT_IO_SO := $(BUILD)/tests/fault-io.so
KEYPOOL_SO := $(BUILD)/tests/keypool-rsa.so
$(FAULT_SO): tests/fault/fault_pkcs11.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_DEFAULT_SOURCE $(WARN) -O2 -g -fPIC -shared $(PKG_CFLAGS) -o $@ $< -ldl
$(FAULT_IO_SO): tests/fault/fault_io.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl
$(KEYPOOL_SO): tests/fault/keypool_rsa.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl

# The test files run side by side (P11E_JOBS, default CPUs + 2); the longest, as timed
# last time in $(BUILD)/integration-times.txt, start first.
integration: all $(FAULT_SO) $(FAULT_IO_SO) $(KEYPOOL_SO) $(BUILD)/old-openssl.list $(TESTHOOKS)
	P11ENROLL=$(BUILD)/p11enroll P11E_TESTHOOKS=$(CURDIR)/$(TESTHOOKS) \
		P11E_FAULT_MODULE=$(CURDIR)/$(FAULT_SO) P11E_RSA_SHIM=$(CURDIR)/$(KEYPOOL_SO) \
		P11E_FAULT_IO=$(CURDIR)/$(FAULT_IO_SO) P11E_TIMINGS=$(CURDIR)/$(BUILD)/integration-times.txt \
		P11E_OPENSSL_BINS=$$(tr '\n' : <$(BUILD)/old-openssl.list) tests/integration/run.sh

# The Python test doubles check themselves (and against OpenSSL's CLI) before they judge us:
# each test class in a process of its own, several at a time (tests/doubles/run_tests.py).
doubles:
	/usr/bin/python3 tests/doubles/run_tests.py

# Plain build first, then everything again under ASan+UBSan. Both trees are built first,
# on every core. Every stage runs, also after one failed (a failing unit test must not hide
# the integration run); the check fails at the end, naming the stages that failed, with
# each stage's time. The two unit passes run beside the doubles (they mostly wait: 4 s of
# CPU in 14 s), each printed when it has ended. The two integration passes run side by side, with half the jobs each,
# each pass printed when it has ended, and fuzz-check beside them at the lowest priority
# (nice 19, idle I/O class): the CPU the integration tests leave while they wait on servers
# is its, and it takes none they want (CHECK_TOGETHER=0: one after the other, all the jobs).
NPROC := $(shell nproc 2>/dev/null || echo 1)
CHECK_TOGETHER ?= 1
CHECK_JOBS ?= $(shell echo $$((($(NPROC) + 3) / 2)))
.PHONY: check-build
check-build: all $(UNIT_BIN) $(FAULT_SO) $(FAULT_IO_SO) $(KEYPOOL_SO) $(BUILD)/old-openssl.list $(TESTHOOKS)

check: test-deps
	@failed=; times=; t0=$$(date +%s); \
	stage() { s=$$1; shift; t=$$(date +%s); "$$@" || failed="$$failed $$s"; \
		times="$$times $$s $$(($$(date +%s) - t))s"; }; \
	collect() { wait $$1 || failed="$$failed $$2"; echo "== $$2 ($$3)"; cat $$3/check-$$4.log; }; \
	plain="$(MAKE) --no-print-directory" san="$(MAKE) --no-print-directory BUILD=build-san SAN=1"; \
	stage build $$plain -j$(NPROC) check-build; \
	stage san:build $$san -j$(NPROC) check-build; \
	stage format-check $$plain format-check; \
	if [ "$(CHECK_TOGETHER)" = 1 ]; then \
		mkdir -p $(BUILD) build-san; \
		since=$$(date +%s); \
		$$plain unit >$(BUILD)/check-unit.log 2>&1 </dev/null & u=$$!; \
		$$san unit >build-san/check-unit.log 2>&1 </dev/null & su=$$!; \
		trap 'kill -TERM $$u $$su 2>/dev/null; wait; exit 130' INT TERM; \
		stage doubles $$plain doubles; \
		collect $$u unit $(BUILD) unit; collect $$su san:unit build-san unit; \
		times="$$times unit+san:unit(+doubles) $$(($$(date +%s) - since))s"; \
		since=$$(date +%s); \
		P11E_JOBS=$${P11E_JOBS:-$(CHECK_JOBS)} setsid $$plain integration \
			>$(BUILD)/check-integration.log 2>&1 </dev/null & a=$$!; \
		P11E_JOBS=$${P11E_JOBS:-$(CHECK_JOBS)} setsid $$san integration \
			>build-san/check-integration.log 2>&1 </dev/null & b=$$!; \
		trap 'kill -TERM -$$a -$$b 2>/dev/null; wait; exit 130' INT TERM; \
		stage fuzz-check nice -n 19 ionice -c 3 $$plain fuzz-check; \
		collect $$a integration $(BUILD) integration; \
		collect $$b san:integration build-san integration; \
		times="$$times integration+san:integration(+fuzz-check) $$(($$(date +%s) - since))s"; \
	else \
		stage doubles $$plain doubles; \
		stage unit $$plain unit; \
		stage san:unit $$san unit; \
		stage fuzz-check $$plain fuzz-check; \
		stage integration $$plain integration; \
		stage san:integration $$san integration; \
	fi; \
	echo "make check: $$(($$(date +%s) - t0)) s (stages:$$times)"; \
	if [ -n "$$failed" ]; then echo "make check: FAILED:$$failed"; exit 1; fi; \
	echo "make check: all stages passed"

demo: deps
	$(MAKE) all
	tests/demo.sh $(BUILD)/p11enroll

bench: test-deps
	$(MAKE) all
	tests/bench.sh $(BUILD)/p11enroll
	tests/bench-station.sh $(BUILD)/p11enroll
	-$(MAKE) fleet  # figures here; `make fleet` alone fails on a peak over its goal

# The fleet simulation links the real scheduling code (schedule_due, schedule_backoff).
$(BUILD)/fleet: tests/fleet/fleet.c $(BUILD)/libp11enroll.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -Iagent -Itokens $(LDFLAGS) -o $@ $< $(BUILD)/libp11enroll.a $(LIBS)

-include $(BUILD)/fleet.d

fleet: $(BUILD)/fleet
	$(BUILD)/fleet

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(BUILD)/p11enroll $(DESTDIR)$(BINDIR)/p11enroll
	install -d $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(BUILD)/p11enroll-net $(DESTDIR)$(LIBEXECDIR)/p11enroll-net
	install -m 0644 conf/p11enroll.8 $(DESTDIR)$(MANDIR)/man8/p11enroll.8
	install -m 0644 conf/p11enroll.conf.5 $(DESTDIR)$(MANDIR)/man5/p11enroll.conf.5
	install -d $(DESTDIR)$(UNITDIR)
	for u in p11enroll.service p11enroll-renew.service; do \
		sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
			conf/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 conf/p11enroll-renew.timer $(DESTDIR)$(UNITDIR)/p11enroll-renew.timer
	install -d $(DESTDIR)$(PREFIX)/share/doc/p11enroll/hooks
	install -m 0755 conf/hooks/* $(DESTDIR)$(PREFIX)/share/doc/p11enroll/hooks/

FORMAT_SRC = $(wildcard agent/*.c agent/*.h tokens/*.c tokens/*.h include/*.h tests/unit/*.c tests/unit/*.h tests/fleet/*.c tests/fault/*.c)
format:
	clang-format -i $(FORMAT_SRC)
# One style (clang-format), and the layers: no include circle among agent/'s modules, no
# agent/ header in tokens/, PKCS#11 only inside tokens/ (tests/layers.sh).
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)
	tests/layers.sh

# ---- Fuzzing (tests/fuzz/README.md) ----
# `make fuzz`: every libFuzzer target in tests/fuzz/ built with clang
# -fsanitize=fuzzer,address,undefined (the library with fuzzer-no-link, in $(FUZZ_DIR)),
# seeded from tests/data and tests/fuzz/seeds (copied into $(FUZZ_DIR)/seeds: a run never
# writes into tests/), each run for FUZZ_SECONDS (default 60), FUZZ_JOBS side by side
# (default: one per CPU). The corpus grows in $(FUZZ_DIR)/corpus from run to run; crashes
# land in $(FUZZ_DIR)/crashes. `make fuzz-check`: the same for 10 s each, a regression guard.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= $(NPROC)
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# clang's -Wformat=2 also flags log.c's vfprintf of its checked format argument.
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L $(WARN) \
	-Wno-format-nonliteral -O1 -g $(FUZZ_SAN) -Iinclude $(PKG_CFLAGS) -DP11E_VERSION='"$(VERSION)"' -DP11E_SYSCONFDIR='"$(SYSCONFDIR)"'
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)
# The network process's sources too: every file gets clang's -Werror as well.
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(NET_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
# Seeds of each target (tests/fuzz/seeds/TARGET/ and tests/data/fuzz/TARGET-* come too).
FUZZ_SEEDS_fuzz_caps := tests/data/caps-*.txt
FUZZ_SEEDS_fuzz_cacert := tests/data/getcacert-* tests/data/*.der
FUZZ_SEEDS_fuzz_certrep := tests/data/certrep-*.der
FUZZ_SEEDS_fuzz_envelope := tests/data/envelope-*.der tests/data/getcacert-*.p7 tests/data/issued*.der
FUZZ_SEEDS_fuzz_nextca := tests/data/nextca-*.der tests/data/getcacert-*.p7
FUZZ_SEEDS_fuzz_ndes := tests/data/ndes/*.html
FUZZ_SEEDS_fuzz_conf := conf/p11enroll.conf

$(FUZZ_DIR)/obj/tokens/%.o: tokens/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -Itokens -c -o $@ $<

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -Iagent -c -o $@ $<

$(FUZZ_DIR)/libp11enroll.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/bin/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(FUZZ_DIR)/libp11enroll.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -Iagent -Itokens \
		-DFUZZ_DATA_DIR='"$(CURDIR)/tests/data"' -o $@ $< $(FUZZ_DIR)/libp11enroll.a $(NET_LIBS)

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BIN:=.d)

.PHONY: fuzz fuzz-build fuzz-check
fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@$(foreach t,$(FUZZ_TARGETS),rm -rf $(FUZZ_DIR)/seeds/$(t) && \
		mkdir -p $(FUZZ_DIR)/seeds/$(t) && for f in $(wildcard $(FUZZ_SEEDS_$(t)) \
		tests/fuzz/seeds/$(t)/* tests/data/fuzz/$(t)-*); do \
		cp "$$f" $(FUZZ_DIR)/seeds/$(t)/ || exit 1; done &&) true
	TMPDIR=$(CURDIR)/$(FUZZ_DIR)/tmp; mkdir -p $$TMPDIR; export TMPDIR; \
		tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

fuzz-check:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

FORMAT_SRC += $(wildcard tests/fuzz/*.c tests/fuzz/*.h)

FORCE:

clean:
	rm -rf build build-san
