#!/usr/bin/env bash
# Generates what `make install` and the .deb ship beside a `cairn` binary,
# from that binary's own command tree (swift-argument-parser):
#   OUT/completions/cairn.bash, OUT/completions/_cairn, OUT/completions/cairn.fish
#       (`cairn --generate-completion-script bash|zsh|fish`);
#   OUT/man/cairn.1, OUT/man/cairn.<verb>.1, ...
#       (swift-argument-parser's `generate-manual` tool, the one its
#       `generate-manual` package plugin runs, on `cairn --experimental-dump-help`).
#
# The plugin (`swift package plugin generate-manual`) always builds the whole
# package itself and documents what it built; it cannot take a given binary.
# So this script builds the plugin's tool once, from the swift-argument-parser
# checkout SwiftPM already resolved (no network), into .build/generate-manual,
# and runs it on the binary it is given.
#
# usage: scripts/generate-docs.sh CAIRN_BINARY OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

if [ $# -ne 2 ]; then
  echo "usage: $0 CAIRN_BINARY OUT_DIR" >&2
  exit 2
fi
binary="$1"
out="$2"
if [ ! -x "$binary" ]; then
  echo "generate-docs: $binary is not an executable cairn; build it first (swift build, or make release)" >&2
  exit 1
fi

mkdir -p "$out/completions" "$out/man"
"$binary" --generate-completion-script bash > "$out/completions/cairn.bash"
"$binary" --generate-completion-script zsh > "$out/completions/_cairn"
"$binary" --generate-completion-script fish > "$out/completions/cairn.fish"

# The generate-manual tool, built from the resolved swift-argument-parser.
tools="$here/.build/generate-manual"
tool="$tools/scratch/debug/generate-manual"
checkout="$here/.build/checkouts/swift-argument-parser"
if [ ! -d "$checkout" ]; then
  (cd "$here" && swift package resolve >/dev/null)
fi
if [ ! -d "$checkout" ]; then
  echo "generate-docs: no swift-argument-parser checkout at $checkout; run \`swift package resolve\` (needs the network once)" >&2
  exit 1
fi
revision="$(git -C "$checkout" rev-parse HEAD)"
# One build at a time (tests run several installs at once).
mkdir -p "$tools"
exec 9>"$tools/lock"
flock 9
if [ ! -x "$tool" ] || [ "$(cat "$tools/revision" 2>/dev/null)" != "$revision" ]; then
  echo "generate-docs: building swift-argument-parser's generate-manual ($(git -C "$checkout" describe --tags 2>/dev/null || echo "$revision"))" >&2
  # A copy of the checkout's tracked files: building in the checkout would leave files in it.
  rm -rf "$tools/source"
  mkdir -p "$tools/source"
  git -C "$checkout" archive HEAD | tar -x -C "$tools/source"
  swift build --package-path "$tools/source" --scratch-path "$tools/scratch" --product generate-manual >&2
  echo "$revision" > "$tools/revision"
fi
flock -u 9

# A fixed date keeps the pages reproducible: the commit's date, else today's.
date="$(git -C "$here" log -1 --format=%cs 2>/dev/null || date -u +%Y-%m-%d)"
rm -f "$out"/man/*.1
"$tool" "$binary" --multi-page --section 1 --date "$date" --output-directory "$out/man"
