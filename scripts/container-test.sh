#!/usr/bin/env bash
# Builds the container image from deploy/Containerfile and checks it end to end, on a
# machine that reaches no image registry (only Debian's package mirror and crates.io).
#
# 1. Base images from Debian's own packages, with mmdebstrap, imported into podman:
#    a runtime base (bookworm minbase, in place of debian:bookworm-slim) and a build base
#    (bookworm minbase with Debian's rustc-web/cargo-web, in place of rust:1-bookworm).
#    They are made once and kept; --fresh makes them again.
# 2. The project's image, built with those bases through the Containerfile's
#    BUILD_IMAGE/RUNTIME_IMAGE arguments; cargo fetches crates from crates.io inside
#    the build. The build is timed.
# 3. The image run as users would: read-only root file system, a data volume, --init,
#    a stand-in Deploy (`patgate demo-deploy`, same image) on a shared network. A token
#    made with the CLI inside the container is accepted through the gateway and the
#    stand-in sees its user; the health check passes; SIGTERM gives a clean exit; the
#    token survives a restart on the same volume. The image's size is printed.
#
# Needs root and Debian (installs podman, buildah, mmdebstrap, runc with apt-get).
# Takes minutes: the first build compiles every dependency.
# Usage: bash scripts/container-test.sh [--fresh]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/container-test
IMAGE=localhost/patgate:container-test
BUILD_BASE=localhost/patgate-build-base:bookworm
RUNTIME_BASE=localhost/patgate-runtime-base:bookworm
NET=patgate-ct-net
VOLUME=patgate-ct-data
GATEWAY=patgate-ct-gateway
DEPLOY=patgate-ct-deploy
SOURCES=/etc/apt/sources.list.d/debian.sources
FRESH=0
[ "${1:-}" = --fresh ] && FRESH=1

# Without systemd podman cannot schedule the health check (this script runs it by hand) and
# says so on every start; those lines are dropped.
no_systemd_noise() { grep -v -e 'systemd connection' -e 'failed to connect to syslog' >&2 || true; }
say() { printf '\n== %s\n' "$*"; }
fail() {
  printf 'container-test: FAILED: %s\n' "$*" >&2
  exit 1
}

if [ "$(id -u)" != 0 ]; then
  fail "run as root (podman storage and mmdebstrap need it)"
fi
missing=()
for tool in podman buildah mmdebstrap runc curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah mmdebstrap runc curl >/dev/null
fi
[ -f "$SOURCES" ] || fail "$SOURCES not found: mmdebstrap reads Debian's mirror from it"

mkdir -p "$WORK"
# crun (podman's default) fails here ("cgroups in hybrid mode not supported"), and the
# default ulimits are refused ("setrlimit RLIMIT_NOFILE: Operation not permitted").
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

cleanup() {
  podman rm -f -t 5 "$GATEWAY" "$DEPLOY" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  podman network rm -f "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

# ---- 1. base images ----
base_image() {
  local name=$1 tar=$2
  shift 2
  if [ "$FRESH" = 0 ] && podman image exists "$name"; then
    echo "$name: kept from an earlier run (--fresh to make it again)"
    return
  fi
  say "making $name with mmdebstrap"
  rm -f "$tar"
  nice -n 19 mmdebstrap --quiet --variant=minbase "$@" bookworm "$tar" "$SOURCES"
  podman rmi -f "$name" >/dev/null 2>&1 || true
  podman import --quiet --change 'CMD ["/bin/bash"]' "$tar" "$name" >/dev/null
  rm -f "$tar"
}
# The runtime base: Debian's minimal system without documentation, manual pages and
# translations, as debian:bookworm-slim is; the exclusions stay in force for packages
# the Containerfile installs.
slim=()
for path in /usr/share/doc/'*' /usr/share/man/'*' /usr/share/info/'*' \
  /usr/share/locale/'*' /usr/share/groff/'*' /usr/share/lintian/'*'; do
  slim+=(--dpkgopt="path-exclude=$path")
done
slim+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
base_image "$RUNTIME_BASE" "$WORK/runtime-base.tar" "${slim[@]}"
# The build base: bookworm's rustc-web and cargo-web (1.85 in bookworm, newer from
# bookworm-security) are Debian's own packages of a current Rust; bookworm's plain
# rustc (1.63) is too old for Cargo.toml's rust-version.
# cargo fetches crates over HTTPS inside the build: the build base trusts the local CAs
# this machine trusts (/usr/local/share/ca-certificates, for example a TLS-inspecting
# proxy's). Only the build stage sees them; the image is built on the runtime base.
ca_hooks=()
local_cas=(/usr/local/share/ca-certificates/*.crt)
if [ -e "${local_cas[0]}" ]; then
  ca_hooks=(--customize-hook="copy-in ${local_cas[*]} /usr/local/share/ca-certificates/"
    --customize-hook='chroot "$1" update-ca-certificates')
fi
base_image "$BUILD_BASE" "$WORK/build-base.tar" \
  --include=rustc-web,cargo-web,gcc,libc6-dev,binutils,ca-certificates "${ca_hooks[@]}"
podman run --rm "$BUILD_BASE" rustc --version

# ---- 2. the project's image ----
say "building $IMAGE from deploy/Containerfile"
start=$(date +%s)
nice -n 19 podman build --format docker \
  -f deploy/Containerfile --ignorefile deploy/Containerfile.dockerignore \
  --build-arg BUILD_IMAGE="$BUILD_BASE" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
  -t "$IMAGE" .
build_seconds=$(($(date +%s) - start))

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
health=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = 10001:10001 ] || fail "image user is '$user', expected 10001:10001"
case $health in
  *patgate/healthz*) ;;
  *) fail "image has no HEALTHCHECK on /patgate/healthz: $health" ;;
esac

# ---- 3. run it ----
say "running the image: stand-in Deploy and gateway on network $NET"
secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
podman network create "$NET" >/dev/null
podman volume create "$VOLUME" >/dev/null
# The stand-in checks the shared secret the gateway sends, so it gets the same one.
podman run -d --name "$DEPLOY" --network "$NET" --read-only --init \
  -e PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET="$secret" \
  "$IMAGE" demo-deploy --listen 0.0.0.0:14516 2> >(no_systemd_noise) >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run_gateway() {
  podman run -d --name "$GATEWAY" --network "$NET" --read-only --init \
    -v "$VOLUME:/var/lib/patgate" -p "127.0.0.1:$port:4516" \
    -e PATGATE_UPSTREAM__URL="http://$DEPLOY:14516" \
    -e PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET="$secret" \
    "$IMAGE" 2> >(no_systemd_noise) >/dev/null
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/patgate/readyz" 2>/dev/null; then
      return 0
    fi
    if [ "$(podman inspect --format '{{.State.Running}}' "$GATEWAY")" != true ]; then
      podman logs "$GATEWAY" >&2 || true
      fail "the gateway container stopped at start"
    fi
    sleep 0.2
  done
  podman logs "$GATEWAY" >&2 || true
  fail "the gateway was not ready on 127.0.0.1:$port within 20 s"
}
run_gateway
echo "gateway ready on 127.0.0.1:$port"

[ "$(podman exec "$GATEWAY" id -u)" = 10001 ] || fail "the gateway does not run as uid 10001"
# As root, so that only --read-only can refuse the write.
if podman exec -u 0 "$GATEWAY" touch /etc/patgate/written 2>/dev/null; then
  fail "the root file system is writable"
fi

say "token created inside the container, used through the gateway"
token=$(podman exec "$GATEWAY" patgate token create --user alice --name container-test --expires 7d)
[ -n "$token" ] || fail "patgate token create printed no token"
answer=$(curl -sS -u ":$token" "http://127.0.0.1:$port/deployit/server/info")
case $answer in
  *'"stand_in"'*'"user":"alice"'*) ;;
  *) fail "the stand-in Deploy did not see alice: $answer" ;;
esac
echo "the stand-in Deploy saw user alice"
code=$(curl -sS -o /dev/null -w '%{http_code}' -u ":not-a-token" "http://127.0.0.1:$port/deployit/server/info")
[ "$code" = 401 ] || fail "a wrong token got $code, expected 401"

say "podman healthcheck run"
podman healthcheck run "$GATEWAY" || fail "the health check failed on a running gateway"
echo healthy
# The stand-in runs the same image, with no gateway on 4516: the check must fail there.
if podman healthcheck run "$DEPLOY" >/dev/null 2>&1; then
  fail "the health check passed on a container with no gateway"
fi
echo "unhealthy where no gateway listens"

say "SIGTERM"
podman stop -t 40 "$GATEWAY" 2> >(no_systemd_noise) >/dev/null
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$GATEWAY")
[ "$exit_code" = 0 ] || {
  podman logs "$GATEWAY" >&2 || true
  fail "the gateway exited with $exit_code after SIGTERM, expected 0"
}
echo "exit status 0"

say "restart on the same volume: the token still works"
podman rm "$GATEWAY" 2> >(no_systemd_noise) >/dev/null
run_gateway
code=$(curl -sS -o /dev/null -w '%{http_code}' -u ":$token" "http://127.0.0.1:$port/deployit/server/info")
[ "$code" = 200 ] || fail "after a restart the token got $code, expected 200"
echo "token accepted after restart"

say "passed"
echo "image $IMAGE: $((size / 1000000)) MB ($size bytes), build ${build_seconds} s"
