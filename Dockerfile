# The stellar-cosigner image: one image, every service (`cosigner <command>`): coordinator, node, and the
# development stand-ins (kms-emulator, ledger-sim). docs/operations/compose.md explains how it is run.
#
#   docker build -t cosigner .                      # official Node images, pnpm install inside the build
#   .ci/docker.sh                                   # offline CI: local base image, node_modules from the context
#
# BASE is the runtime image; BUILD_BASE the one that installs. Both are Node 24, the current LTS and the runtime
# `.ci/run` tests first. BUILD_BASE needs python3, make and g++ for pkcs11js, the one native module compiled at
# install (better-sqlite3 13 brings a prebuilt Node-API binary). DEPS=install installs everything (the build needs
# TypeScript, a root devDependency), runs `pnpm build` (every package's src/*.ts to dist/*.js), then installs again
# with --prod, offline from the store the first install filled, so no test or build tool stays in the image.
# DEPS=context takes the production node_modules and the dist/ folders already in the build context (.ci/docker.sh
# builds and stages them with the same node binary the base image holds).
#
# The image runs dist/ as plain JavaScript, with no loader: NODE_OPTIONS=--conditions=cosigner-dist below selects
# it (apps/cli/bin/cosigner.js); tsx would cost 85-95 MB per node and seconds of start-up per process.
ARG BASE=node:24-bookworm-slim
ARG BUILD_BASE=node:24-bookworm

FROM ${BUILD_BASE} AS build
ARG DEPS=install
ARG PNPM_VERSION=10.34.8
WORKDIR /app
COPY . .
RUN if [ "$DEPS" = context ]; then \
      test -d node_modules/.pnpm || { echo "DEPS=context but the context has no node_modules"; exit 1; }; \
      test -f apps/cli/dist/BUILD.json || { echo "DEPS=context but the context has no dist/ (.ci/docker.sh builds it)"; exit 1; }; \
    else \
      rm -rf node_modules apps/*/node_modules packages/*/node_modules services/*/node_modules test/node_modules bench/node_modules \
      && npm install -g "pnpm@${PNPM_VERSION}" \
      && CI=true pnpm install --frozen-lockfile \
      && pnpm build \
      && rm -rf node_modules apps/*/node_modules packages/*/node_modules services/*/node_modules test/node_modules bench/node_modules \
      && CI=true pnpm install --frozen-lockfile --prod --offline; \
    fi \
    # Every package's dist/ is there and was built from the sources beside it (the bin refuses it otherwise).
    && node --conditions=cosigner-dist apps/cli/bin/cosigner.js --help >/dev/null \
    # docker/setup.ts resolves its imports (the launcher, the account-setup routine, the AWS and Stellar SDKs) as the CLI does.
    && mkdir -p docker && ln -sfn ../apps/cli/node_modules docker/node_modules \
    && node -e "require('/app/services/cosigner/node_modules/better-sqlite3')(':memory:').close()"

FROM ${BASE}
# Code owned by root and read-only to the service user; state only under /data (a volume per service) and /tmp
# (a tmpfs: the one-shot setup service still runs docker/setup.ts through tsx, which keeps its transpile cache
# there; the services themselves run dist/ and write nothing to /tmp). /cluster/* are the mount points of the
# one-shot setup service (/cluster/pg-secrets: the PostgreSQL password of docker-compose.ha.yml, a volume first
# mounted here so that it belongs to uid 1000).
COPY --from=build /app /app
RUN mkdir -p /data /cluster/coordinator /cluster/ledger \
      /cluster/kms-0 /cluster/kms-1 /cluster/kms-2 /cluster/node-0 /cluster/node-1 /cluster/node-2 /cluster/pg-secrets \
    && chown -R 1000:1000 /data /cluster && chmod 0700 /data
ENV NODE_ENV=development \
    NODE_OPTIONS=--conditions=cosigner-dist
WORKDIR /app
USER 1000:1000
VOLUME ["/data"]
# V8 flags: see SERVICE_V8_FLAGS in packages/launcher/src/cluster.ts (a 4 MB young generation: 60-75 MB less peak
# RSS; TurboFan on the main thread: about 12 MB less peak RSS, no CPU cost measured). V8 refuses the second in
# NODE_OPTIONS, so both are on the command line.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--no-concurrent-recompilation", "/app/apps/cli/bin/cosigner.js"]
CMD ["--help"]
