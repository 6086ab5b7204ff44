# Benchmarks against the peer tools; see docs/BENCHMARKS.md.
# `make bench` needs a quiet machine and several GiB of disk under ./bench-data.

.PHONY: bench bench-small bench-file bench-s3 bench-archive

# Issues 2, 3, 4 and 12 (replay and deltas) on the default dataset (about 1.2 GiB of InnoDB data).
bench:
	bash scripts/bench.sh

# The same on a tiny dataset: proves the script works, measures nothing.
bench-small:
	BENCH_PRESET=small bash scripts/bench.sh

# File storage only (issues 2 and 3).
bench-file:
	BENCH_ISSUES="2 3" bash scripts/bench.sh

# S3 only (issue 4), at upload concurrency 1, 4 and 8.
bench-s3:
	BENCH_ISSUES="4" bash scripts/bench.sh

# Replay only (issue 12): the SQL thread against mariadb-binlog | mariadb at the same durability.
.PHONY: bench-replay
bench-replay:
	BENCH_ISSUES="12" bash scripts/bench.sh

# Physical deltas only (issue 12): a delta after 1% of rows changed vs a full backup, and its restore.
.PHONY: bench-delta
bench-delta:
	BENCH_ISSUES="delta" bash scripts/bench.sh

# Continuous binary log archiving only (issue 11): lag, CPU, RSS, replay.
bench-archive:
	BENCH_ISSUES="11" bash scripts/bench.sh

# Encryption only (issue 14): a full backup and restore with encryption on vs off.
.PHONY: bench-crypt
bench-crypt:
	BENCH_ISSUES="14" bash scripts/bench.sh

# The scheduler at fleet scale (issue 18): the real ctld against 100, 1,000
# and 10,000 simulated tablets, 10 minutes each; see docs/BENCHMARKS.md.
.PHONY: bench-scale
bench-scale:
	bash scripts/bench-scale.sh

# Installing (docs/INSTALL.md). `make install PREFIX=/usr/local` builds the
# release binary (its commit baked in: scripts/build-info.sh) and installs it
# with its completions, man pages, systemd units and examples; DESTDIR stages
# it for packagers. CAIRN_BINARY=path installs that binary instead of
# building one (the tests install the debug build).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPLETIONDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPLETIONDIR ?= $(PREFIX)/share/fish/vendor_completions.d
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR ?= $(PREFIX)/share/doc/cairn
CAIRN_BINARY ?=
INSTALL_BINARY = $(if $(CAIRN_BINARY),$(CAIRN_BINARY),.build/release/cairn)
DEB_OUT ?= .build/deb
DEB_COMPRESSION ?= xz

.PHONY: release install uninstall deb

# The release binary, with the Swift runtime linked in statically so it runs
# on a machine without a Swift toolchain.
release:
	bash scripts/build-release.sh

install: $(if $(CAIRN_BINARY),,release)
	@set -e; stage=$$(mktemp -d); trap 'rm -rf "$$stage"' EXIT; \
	bash scripts/generate-docs.sh "$(INSTALL_BINARY)" "$$stage"; \
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(BASHCOMPLETIONDIR)" \
	  "$(DESTDIR)$(ZSHCOMPLETIONDIR)" "$(DESTDIR)$(FISHCOMPLETIONDIR)" "$(DESTDIR)$(SYSTEMDUNITDIR)" \
	  "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(DOCDIR)/examples"; \
	install -m 0755 "$(INSTALL_BINARY)" "$(DESTDIR)$(BINDIR)/cairn"; \
	install -m 0644 "$$stage/completions/cairn.bash" "$(DESTDIR)$(BASHCOMPLETIONDIR)/cairn"; \
	install -m 0644 "$$stage/completions/_cairn" "$(DESTDIR)$(ZSHCOMPLETIONDIR)/_cairn"; \
	install -m 0644 "$$stage/completions/cairn.fish" "$(DESTDIR)$(FISHCOMPLETIONDIR)/cairn.fish"; \
	install -m 0644 "$$stage"/man/*.1 "$(DESTDIR)$(MANDIR)/man1/"; \
	for unit in cairn-ctld.service cairn-tablet@.service; do \
	  sed 's|/usr/bin/cairn|$(BINDIR)/cairn|g' "dist/systemd/$$unit" > "$(DESTDIR)$(SYSTEMDUNITDIR)/$$unit"; \
	  chmod 0644 "$(DESTDIR)$(SYSTEMDUNITDIR)/$$unit"; \
	done; \
	install -m 0644 dist/sysusers-cairn.conf "$(DESTDIR)$(SYSUSERSDIR)/cairn.conf"; \
	install -m 0644 dist/etc/cairn.json dist/etc/ctld.env dist/etc/tablet.env "$(DESTDIR)$(DOCDIR)/examples/"; \
	echo "installed $(DESTDIR)$(BINDIR)/cairn ($$("$(INSTALL_BINARY)" --version))"

# Removes what install put in place (every cairn.* man page, so pages of
# verbs a newer version dropped go too). Leaves /etc/cairn and /var/lib/cairn.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/cairn" \
	  "$(DESTDIR)$(BASHCOMPLETIONDIR)/cairn" "$(DESTDIR)$(ZSHCOMPLETIONDIR)/_cairn" "$(DESTDIR)$(FISHCOMPLETIONDIR)/cairn.fish" \
	  "$(DESTDIR)$(MANDIR)/man1/cairn.1" "$(DESTDIR)$(MANDIR)"/man1/cairn.*.1 \
	  "$(DESTDIR)$(SYSTEMDUNITDIR)/cairn-ctld.service" "$(DESTDIR)$(SYSTEMDUNITDIR)/cairn-tablet@.service" \
	  "$(DESTDIR)$(SYSUSERSDIR)/cairn.conf" \
	  "$(DESTDIR)$(DOCDIR)/examples/cairn.json" "$(DESTDIR)$(DOCDIR)/examples/ctld.env" "$(DESTDIR)$(DOCDIR)/examples/tablet.env"
	rmdir "$(DESTDIR)$(DOCDIR)/examples" "$(DESTDIR)$(DOCDIR)" 2>/dev/null || true

# A Debian package of the release binary (or CAIRN_BINARY) in $(DEB_OUT).
deb: $(if $(CAIRN_BINARY),,release)
	bash scripts/package-deb.sh --binary "$(INSTALL_BINARY)" --out "$(DEB_OUT)" --compression "$(DEB_COMPRESSION)"
