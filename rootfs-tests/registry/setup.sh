#!/bin/bash
# Real registries on 127.0.0.1 for rootfs-tests/registry.rs and bench/pull.sh: Debian's
# docker-registry (distribution 2.8), started as plain background daemons, with the fixtures
# pushed by skopeo. As root; idempotent (what is up and pushed is left alone).
#
#   rootfs-tests/registry/setup.sh [FIXTURES_DIR]   # install, configure, start, push; prints the env
#   rootfs-tests/registry/setup.sh --stop           # stop what it started
#
#   127.0.0.1:5443  TLS, htpasswd (Basic) user gpurun-test (password in $DIR/password)
#   127.0.0.1:5444  TLS, Bearer: `auth.silly` challenges with the token endpoint below
#   127.0.0.1:5445  TLS, the token endpoint (token-server.py: checks Basic credentials when sent)
#   127.0.0.1:5080  plain HTTP, no auth (for `[registry] insecure`)
#   127.0.0.1:5081  plain HTTP, fault-proxy.py in front of 5080 (cut connections, 429, 503, bad
#                   bytes, an oversized manifest, a redirect to another host)
#
# All four serve one storage directory. The test CA (made here with openssl) is installed where
# gpurun, skopeo and podman look for a registry's CA: /etc/containers/certs.d/HOST:PORT/ca.crt.
# Pushed: test/oci:latest (OCI), test/docker:v2s2 (Docker schema 2), test/multi:latest (a
# two-platform index), test/zstd:latest (zstd layers), test/warm:latest (only the warm-path test
# asks for it: it counts requests), test/sbase:latest and test/stop:latest (an image and one built
# on it: the blob-store test), test/herd:latest (concurrent starts), from rootfs-tests/images/build.sh's output.
set -euo pipefail

log() { echo "registry/setup: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
DIR=/run/gpurun-registry
DATA=/var/lib/gpurun-registry
WAIT=${WAIT:-30}
mkdir -p "$DIR"
chmod 0755 "$DIR"

alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ -d "/proc/$pid" ]; }
stop_all() {
    local f pid
    for f in "$DIR"/*.pid; do
        [ -e "$f" ] || continue
        if alive "$f"; then
            pid=$(cat "$f")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq $((WAIT * 2))); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}
if [ "${1:-}" = --stop ]; then
    stop_all
    log "stopped"
    exit 0
fi
fixtures=${1:-$(cd "$here/../.." && pwd)/.fixtures}

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v skopeo >/dev/null || need+=(skopeo)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- certificates and the password ----------------------------------------------------------
if [ ! -s "$DIR/server.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=gpurun test CA" \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$DIR/server.key" \
        -out "$DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$DIR/san.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
        -days 3650 -extfile "$DIR/san.ext" -out "$DIR/server.crt" 2>/dev/null
    chmod 0644 "$DIR/server.key" # read by the daemons only; the directory is private to this machine's tests
fi
for port in 5443 5444 5445; do
    mkdir -p "/etc/containers/certs.d/127.0.0.1:$port"
    cp "$DIR/ca.crt" "/etc/containers/certs.d/127.0.0.1:$port/ca.crt"
done
if [ ! -s "$DIR/password" ]; then
    head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$DIR/password"
    chmod 0644 "$DIR/password"
fi
password=$(cat "$DIR/password")
htpasswd -Bbn gpurun-test "$password" >"$DIR/htpasswd" 2>/dev/null
echo "gpurun-test:$password" >"$DIR/users"

# --- configurations ------------------------------------------------------------------------
mkdir -p "$DATA"
config() { # NAME ADDR AUTH-YAML TLS(yes|no)
    {
        echo "version: 0.1"
        echo "log: {level: info, accesslog: {disabled: false}}"
        echo "storage: {filesystem: {rootdirectory: $DATA}, delete: {enabled: true}}"
        echo "http:"
        echo "  addr: $2"
        echo "  secret: gpurun-test-$1"
        if [ "$4" = yes ]; then
            echo "  tls: {certificate: $DIR/server.crt, key: $DIR/server.key}"
        fi
        [ -z "$3" ] || printf 'auth:\n%s\n' "$3"
    } >"$DIR/$1.yml"
}
config basic 127.0.0.1:5443 "  htpasswd: {realm: gpurun-test, path: $DIR/htpasswd}" yes
config bearer 127.0.0.1:5444 "  silly: {realm: \"https://127.0.0.1:5445/token\", service: gpurun-test}" yes
config plain 127.0.0.1:5080 "" no

# --- daemons -------------------------------------------------------------------------------
start() { # NAME PORT CMD...
    local name=$1 port=$2
    shift 2
    alive "$DIR/$name.pid" && return 0
    # Someone else's server on the port would answer in place of ours (with another CA).
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port $port is already in use by another process: stop it (or the registries of another test run)"
        exit 1
    fi
    setsid "$@" >"$DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name.pid"
    for _ in $(seq $((WAIT * 4))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        alive "$DIR/$name.pid" || break
        sleep 0.25
    done
    log "$name did not come up on port $port; its log:"
    tail -n 20 "$DIR/$name.log" >&2
    exit 1
}
start basic 5443 docker-registry serve "$DIR/basic.yml"
start bearer 5444 docker-registry serve "$DIR/bearer.yml"
start plain 5080 docker-registry serve "$DIR/plain.yml"
start token 5445 python3 "$here/token-server.py" 5445 "$DIR/server.crt" "$DIR/server.key" "$DIR/users" "$DIR/token-requests.log"
start fault 5081 python3 "$here/fault-proxy.py" 5081 5080 "$DIR/fault-requests.log"

# --- images --------------------------------------------------------------------------------
push() { # SRC DEST [skopeo options]
    local src=$1 dest=$2
    shift 2
    skopeo copy -q --dest-creds "gpurun-test:$password" "$@" "$src" "docker://127.0.0.1:5443/$dest" >/dev/null
}
if [ ! -e "$DATA/.pushed" ]; then
    [ -d "$fixtures/oci-layout" ] || { log "no fixtures in $fixtures: run rootfs-tests/images/build.sh first"; exit 1; }
    push "oci:$fixtures/oci-layout:latest" test/oci:latest
    push "oci:$fixtures/oci-layout:latest" test/docker:v2s2 --format v2s2
    push "oci:$fixtures/oci-multiarch:latest" test/multi:latest --all
    push "oci:$fixtures/oci-zstd:latest" test/zstd:latest
    push "oci:$fixtures/oci-layout:latest" test/warm:latest
    push "oci:$fixtures/oci-layout:base" test/sbase:latest
    push "oci:$fixtures/oci-layout:latest" test/stop:latest
    push "oci:$fixtures/oci-layout:latest" test/herd:latest
    touch "$DATA/.pushed"
fi
echo "GPURUN_TEST_REGISTRY_DIR=$DIR"
