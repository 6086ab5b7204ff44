#!/usr/bin/env bash
# Builds .build/release/cairn for `make install` and `make deb`: the git
# commit baked in (scripts/build-info.sh, removed again afterwards, even on
# failure) and the Swift runtime linked statically, so the binary needs only
# the system libraries the .deb depends on.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
commit="$(bash scripts/build-info.sh)"
trap 'bash scripts/build-info.sh --remove' EXIT
echo "build-release: cairn at commit $commit"
swift build -c release --product cairn --static-swift-stdlib
