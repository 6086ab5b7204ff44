#!/usr/bin/env bash
# Builds .build/release/cairn for `make install` and `make deb`: the git
# commit baked in (scripts/build-info.sh, removed again afterwards, even on
# failure) and the Swift runtime linked statically, so the binary needs only
# the system libraries the .deb depends on.
#
# A binary already built by this script from the same clean commit is kept
# as it is, so `make release && sudo make install` builds as you and only
# installs as root (a tree with uncommitted changes is always rebuilt).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
binary=.build/release/cairn
commit="$(bash scripts/build-info.sh)"
trap 'bash scripts/build-info.sh --remove' EXIT
case "$commit" in
  unknown|*-dirty) ;;
  *)
    if [ -x "$binary" ] && "$binary" --version 2>/dev/null | grep -qF "(commit $commit)"; then
      echo "build-release: $binary is up to date (commit $commit)"
      exit 0
    fi
    ;;
esac
echo "build-release: cairn at commit $commit"
swift build -c release --product cairn --static-swift-stdlib
