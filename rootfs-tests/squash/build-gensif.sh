#!/usr/bin/env bash
# Builds rootfs-tests/squash/gensif.go against Debian's copy of the SIF reference implementation
# (golang-github-sylabs-sif-dev), offline: GOPATH mode over /usr/share/gocode, with the module's
# /v2 import path linked in. Usage: build-gensif.sh OUT_BINARY
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build-gensif.sh OUT_BINARY}
src=/usr/share/gocode/src/github.com/sylabs/sif
[[ -d $src ]] || { echo "build-gensif.sh: $src missing: apt-get install golang-go golang-github-sylabs-sif-dev" >&2; exit 1; }
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/sylabs/sif" "$gopath/src/gensif"
ln -s "$src" "$gopath/src/github.com/sylabs/sif/v2"
cp "$here/gensif.go" "$gopath/src/gensif/"
cd "$gopath/src/gensif"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$gopath/cache" GOFLAGS= go build -o "$out" .
