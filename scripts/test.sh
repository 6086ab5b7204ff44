#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole suite against
# real mariadbd instances (and SeaweedFS for the S3 tests).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install.sh
swift build --build-tests
swift test --skip-build "$@"
