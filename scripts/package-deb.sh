#!/usr/bin/env bash
# Builds a Debian package of a given `cairn` binary with dpkg-deb: the binary,
# completions, man pages, systemd units, the sysusers entry, and an example
# /etc/cairn/cairn.json (a conffile). `make deb` passes the release binary;
# the tests pass the debug build (which links the Swift runtime from the
# toolchain, so that package only runs where the toolchain is).
#
# usage: scripts/package-deb.sh --binary PATH --out DIR [--compression xz|gzip|none]
#        (prints the .deb's path; xz by default; the tests take none: xz or
#        gzip spend half a minute or more on a 140 MB debug binary)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary=""
out=""
compression="xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compression) compression="$2"; shift 2 ;;
    *) echo "usage: $0 --binary PATH --out DIR [--compression xz|gzip|none]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ] || [ -z "$out" ]; then
  echo "usage: $0 --binary PATH --out DIR [--compression xz|gzip|none]" >&2
  exit 2
fi
command -v dpkg-deb >/dev/null 2>&1 || { echo "package-deb: dpkg-deb is missing; install it with \`apt-get install dpkg\`" >&2; exit 1; }
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# "cairn 0.3.0 (commit abc)" -> 0.3.0; a build of a known commit adds it (0.3.0+gabc).
version_line="$("$binary" --version)"
version="$(echo "$version_line" | awk '{print $2}')"
commit="$(echo "$version_line" | sed -n 's/.*(commit \([A-Za-z0-9.-]*\)).*/\1/p')"
# (-dirty becomes .dirty: a hyphen would start a Debian revision.)
if [ -n "$commit" ] && [ "$commit" != "unknown" ]; then version="$version+g${commit//-/.}"; fi
arch="$(dpkg --print-architecture)"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
make -s -C "$here" install DESTDIR="$root" PREFIX=/usr CAIRN_BINARY="$binary" >&2
install -d "$root/etc/cairn" "$root/DEBIAN"
install -m 0644 "$here/dist/etc/cairn.json" "$root/etc/cairn/cairn.json"
install -m 0644 "$here/dist/etc/ctld.env" "$root/etc/cairn/ctld.env"

# The tools cairn runs, and the libraries it links against; the rest of the
# binary's shared libraries (SQLite for GRDB, OpenSSL, libstdc++, ...) map to
# the packages that own them here (a small dpkg-shlibdeps). Libraries no
# package owns (a debug build's Swift runtime, from the toolchain) add nothing.
depends="mariadb-backup, mariadb-client, libmariadb3, libzstd1"
for library in $(ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\/(usr\/)?lib/ {print $3}'); do
  owner="$(dpkg -S "$library" 2>/dev/null || dpkg -S "/usr$library" 2>/dev/null || dpkg -S "$(readlink -f "$library")" 2>/dev/null || true)"
  package="${owner%%:*}"
  case ", $depends, " in *", $package, "*) continue ;; esac
  if [ -n "$package" ]; then depends="$depends, $package"; fi
done
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: cairn
Version: $version
Architecture: $arch
Maintainer: Cairn developers <cairn@localhost>
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Description: backup and point-in-time recovery for sharded MariaDB
 Consistent physical or logical snapshots, incremental backups from the
 binary logs, and restore to a point in time, on file or object storage;
 with a control server (cairn-ctld.service) and tablet agents
 (cairn-tablet@.service) that schedule and run them.
CONTROL
printf '/etc/cairn/cairn.json\n/etc/cairn/ctld.env\n' > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  if ! getent passwd cairn >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
      systemd-sysusers cairn.conf
    else
      adduser --system --group --home /var/lib/cairn --no-create-home cairn
    fi
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
POSTINST
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

deb="$out/cairn_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >&2
echo "$deb"
