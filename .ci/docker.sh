#!/usr/bin/env bash
# The Docker part of CI, as root, on a machine that reaches Debian's packages and the
# npm registry but no container registry. Idempotent: run it again and it only redoes what is missing or stale.
#  1. apt: docker.io, docker-compose (Compose v1), iptables, busybox-static (the local base image's shell);
#  2. start dockerd in the background unless an engine answers (pid in $DOCKER_STATE/dockerd.pid, log beside it);
#  3. build the local base image `cosigner-base:local` with `docker import`: the node binary first on PATH (Node 24,
#     the image's runtime: `.ci/run` puts the latest 24.x from the npm registry there; anything else is refused), the
#     shared libraries `ldd` lists, busybox as /bin/sh, a `node` user (uid 1000, as in the official Node images);
#  4. build the project image `cosigner:local` from a staging copy of the working tree whose production
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
for c in dockerd docker-compose iptables busybox nsenter; do command -v "$c" >/dev/null || need+=("$c"); done
if [ -e /bin/busybox ] || [ -e /usr/bin/busybox ]; then :; else need+=(busybox); fi
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io docker-compose iptables busybox-static util-linux >/dev/null
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
