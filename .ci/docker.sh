#!/usr/bin/env bash
# The Docker part of CI, as root, on a machine that reaches Debian's packages and the
# npm registry but no container registry. Idempotent: run it again and it only redoes what is missing or stale.
#  1. apt: docker.io, docker-compose (Compose v1), iptables, busybox-static (the local base image's shell);
#  2. start dockerd in the background unless an engine answers (pid in $DOCKER_STATE/dockerd.pid, log beside it);
#  3. build the local base image `cosigner-base:local` with `docker import`: the node binary first on PATH (Node 24,
#     the image's runtime: `.ci/run` puts the latest 24.x from the npm registry there; anything else is refused), the
#     shared libraries `ldd` lists, busybox as /bin/sh, a `node` user (uid 1000, as in the official Node images);
#  4. for the HA stack (docker-compose.ha.yml), two more images made the same way from Debian's packages on this
#     machine: `cosigner-pg:local` (PostgreSQL 15 and openssl) and `cosigner-lb:local` (haproxy);
#  5. build the project image `cosigner:local` from a staging copy of the working tree whose production
#     node_modules are installed here (pnpm --prod; both native modules are Node-API addons) and whose
#     dist/ folders are built here (`pnpm build`'s script with --root, the repository's own TypeScript), since no
#     build container can fetch anything: Dockerfile DEPS=context. Real users build with the defaults
#     (`docker build .`: official Node images, pnpm install and pnpm build inside the build).
# Then: `pnpm test:docker` (the compose chaos suite) or `docker-compose up -d` (docs/operations/compose.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DOCKER_STATE=${DOCKER_STATE:-/var/tmp/cosigner-docker}
STAGE=${COSIGNER_DOCKER_STAGE:-$DOCKER_STATE/context}
BASE_IMAGE=${COSIGNER_BASE_IMAGE:-cosigner-base:local}
IMAGE=${COSIGNER_IMAGE:-cosigner:local}
PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")
step() { printf '\n== docker: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
mkdir -p "$DOCKER_STATE"

step "apt packages"
need=()
for c in dockerd docker-compose iptables busybox nsenter haproxy openssl; do command -v "$c" >/dev/null || need+=("$c"); done
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
if [ -e /bin/busybox ] || [ -e /usr/bin/busybox ]; then :; else need+=(busybox); fi
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io docker-compose iptables busybox-static util-linux \
    postgresql-15 haproxy openssl >/dev/null
fi
docker-compose version --short

step "docker engine"
if ! docker info >/dev/null 2>&1; then
  # dockerd from the docker.io package; its pid is kept so it can be stopped by pid (never by name).
  nohup dockerd >"$DOCKER_STATE/dockerd.log" 2>&1 &
  echo $! >"$DOCKER_STATE/dockerd.pid"
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$(cat "$DOCKER_STATE/dockerd.pid")" 2>/dev/null || { tail -20 "$DOCKER_STATE/dockerd.log"; exit 1; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not answer in 60 s"; tail -20 "$DOCKER_STATE/dockerd.log"; exit 1; }
  echo "dockerd started, pid $(cat "$DOCKER_STATE/dockerd.pid"), log $DOCKER_STATE/dockerd.log"
else
  echo "an engine already answers"
fi
docker version --format 'engine {{.Server.Version}}'

step "base image ${BASE_IMAGE}"
NODE_BIN=$(readlink -f "$(command -v node)")
NODE_VERSION=$("$NODE_BIN" --version)
# The image runs what the Dockerfile's defaults run (node:24 images): a base made from another major would ship a
# runtime no other part of the project is tested on.
case "$NODE_VERSION" in
  v24.*) ;;
  *) echo "the base image is made from the node first on PATH, and that is $NODE_VERSION ($NODE_BIN): put Node 24 first (README.md, \"Quick start\")"; exit 1 ;;
esac
BUSYBOX=$(command -v busybox)
# The label records what the image was made of; a different node binary makes a new one.
want="node ${NODE_VERSION} $(sha256sum "$NODE_BIN" | cut -c1-16)"
have=$(docker image inspect -f '{{index .Config.Labels "cosigner.base"}}' "$BASE_IMAGE" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  ROOTFS=$(mktemp -d "$DOCKER_STATE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS"' EXIT
  mkdir -p "$ROOTFS"/{bin,usr/local/bin,etc,tmp,root,home/node,var/tmp}
  chmod 1777 "$ROOTFS/tmp" "$ROOTFS/var/tmp"
  cp "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
  # The loader and every library node links (libc, libstdc++, libm, libgcc_s, ...); the native addons
  # (better-sqlite3, pkcs11js) need no other library.
  for lib in $(ldd "$NODE_BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
  done
  # glibc resolves names through its built-in files/dns modules (glibc >= 2.34); Docker writes
  # /etc/hosts and /etc/resolv.conf at run time.
  cp "$BUSYBOX" "$ROOTFS/bin/busybox"
  for app in $("$BUSYBOX" --list); do [ -e "$ROOTFS/bin/$app" ] || ln -s busybox "$ROOTFS/bin/$app"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOTFS/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
  printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
  chown 1000:1000 "$ROOTFS/home/node"
  [ -d /etc/ssl/certs ] && mkdir -p "$ROOTFS/etc/ssl" && cp -rL /etc/ssl/certs "$ROOTFS/etc/ssl/certs"
  tar -C "$ROOTFS" -c . | docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_VERSION='"${NODE_VERSION#v}" \
    -c 'CMD ["node"]' \
    -c "LABEL cosigner.base=\"$want\"" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS"
  trap - EXIT
  echo "built $BASE_IMAGE ($want)"
else
  echo "$BASE_IMAGE is up to date ($want)"
fi
docker run --rm "$BASE_IMAGE" node -e 'console.log("base image runs node " + process.version)'

# import_image IMAGE LABEL USER BINDIRS PATH...: an image made of host files only (no registry): each PATH (a file or
# a directory, copied to the same place), BINDIRS put first on the image's PATH, every library `ldd` lists for the ELF files among them, busybox as /bin/sh
# and USER as uid 1000 (the uid every service of the compose files runs as). Rebuilt only when LABEL changes (the
# Debian package versions it was made of).
import_image() {
  local image=$1 label=$2 user=$3 bindirs=$4 have root f lib
  shift 4
  have=$(docker image inspect -f '{{index .Config.Labels "cosigner.base"}}' "$image" 2>/dev/null || true)
  if [ "$have" = "$label" ]; then
    echo "$image is up to date ($label)"
    return 0
  fi
  root=$(mktemp -d "$DOCKER_STATE/rootfs.XXXXXX")
  mkdir -p "$root"/{bin,etc,tmp,run,var/tmp,home/$user}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -a "$f" "$root$f"
  done
  # The libraries of every ELF file copied (the server's plugins link libpq, ICU, OpenSSL...).
  find "$root" -type f -print0 | while IFS= read -r -d '' f; do
    [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  cp "$BUSYBOX" "$root/bin/busybox"
  for app in $("$BUSYBOX" --list); do [ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:1000:1000:%s:/home/%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    "$user" "$user" "$user" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:1000:\nnogroup:x:65534:\n' "$user" >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  chown 1000:1000 "$root/home/$user"
  tar -C "$root" -c . | docker import \
    -c "ENV PATH=$bindirs:/usr/local/bin:/usr/sbin:/usr/bin:/bin" \
    -c "LABEL cosigner.base=\"$label\"" \
    - "$image" >/dev/null
  rm -rf "$root"
  echo "built $image ($label, $(docker image ls "$image" --format '{{.Size}}'))"
}

PG_IMAGE=${COSIGNER_PG_IMAGE:-cosigner-pg:local}
LB_IMAGE=${COSIGNER_LB_IMAGE:-cosigner-lb:local}
pkgver() { dpkg-query -W -f '${Package} ${Version}' "$1"; }
step "HA images ${PG_IMAGE}, ${LB_IMAGE}"
# PostgreSQL: the server, initdb, pg_ctl, psql and pg_isready (docker/ha/postgres.sh runs them), the extension
# modules but not the LLVM JIT (llvmjit.so and its 26 MB of bitcode: jit is off, docker/ha/postgres.sh), the share
# directory (catalog bootstrap files, timezone names) and the system time zones Debian's build reads; openssl makes
# the server's TLS certificate at first start.
PG=/usr/lib/postgresql/15
pg_files=("$PG/bin/postgres" "$PG/bin/initdb" "$PG/bin/pg_ctl" "$PG/bin/psql" "$PG/bin/pg_isready"
  /usr/share/postgresql/15 /usr/share/zoneinfo /usr/bin/openssl /etc/ssl/openssl.cnf /usr/lib/ssl/openssl.cnf)
for f in "$PG"/lib/*.so; do case "$f" in */llvmjit.so) ;; *) pg_files+=("$f") ;; esac; done
import_image "$PG_IMAGE" "$(pkgver postgresql-15), $(pkgver openssl)" postgres "$PG/bin" "${pg_files[@]}"
docker run --rm "$PG_IMAGE" postgres --version
import_image "$LB_IMAGE" "$(pkgver haproxy)" haproxy /usr/sbin /usr/sbin/haproxy
docker run --rm "$LB_IMAGE" haproxy -v | head -1

step "build context with production node_modules and dist/"
command -v pnpm >/dev/null || npm install -g "pnpm@${PNPM_VERSION}" >/dev/null
rm -rf "$STAGE"
mkdir -p "$STAGE"
# The files a clean clone has (plus uncommitted ones, minus deleted ones), filtered by .dockerignore as
# `docker build .` would be, except that node_modules are kept: the ones installed below are the image's.
git ls-files -z --cached --others --exclude-standard |
  xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' _ |
  tar --null -T - -c | tar -C "$STAGE" -x
# The staged context must not drop the node_modules installed here; everything else .dockerignore says holds.
grep -v '^node_modules\|^\*\*/node_modules' "$ROOT/.dockerignore" >"$STAGE/.dockerignore"
(
  cd "$STAGE"
  # --prod: no test or lint tools in the image. The store already holds every package after the repository's
  # own install (better-sqlite3 brings its prebuilt binary; pkcs11js is compiled once and then cached).
  CI=true pnpm install --frozen-lockfile --prod --prefer-offline --reporter=append-only | tail -3
)
# dist/ is git-ignored, so the staged copy has none: transpile the staged sources into it with the repository's own
# TypeScript and tsx (root devDependencies; the staged install has neither). The image runs dist/ with no loader.
if [ ! -e node_modules/typescript ] || [ ! -e node_modules/.bin/tsx ]; then
  CI=true pnpm install --frozen-lockfile --prefer-offline --reporter=append-only | tail -3
fi
node_modules/.bin/tsx scripts/build.ts --root "$STAGE" | tail -1

step "project image ${IMAGE}"
docker build -q --force-rm \
  --build-arg BASE="$BASE_IMAGE" \
  --build-arg BUILD_BASE="$BASE_IMAGE" \
  --build-arg DEPS=context \
  -t "$IMAGE" "$STAGE"
docker run --rm --read-only --tmpfs /tmp "$IMAGE" --help | head -3
docker image ls "$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
step "done"
