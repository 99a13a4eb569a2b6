# Chronos container image. Two stages: `build` compiles the bundle and its V8 compile cache,
# `runtime` ships only dist/ (without source maps), package.json, that cache and tini.
# esbuild bundles every runtime dependency into dist/, so the runtime stage needs no node_modules
# at all (test/deploy checks this by starting the bundle from a directory that has none).
#
# Build:  docker build -t chronos .
# Run:    docker run -p 8080:8080 -v chronos-data:/data --env-file chronos.env chronos
# Check:  npm run test:image (builds this file and checks the image it produces; docs/deploy-fly.md)
#
# The base image is NOT pinned by digest in this repository: the digest of node:24-slim could not
# be looked up where this file was written, and an invented one would be worse than none. Pin it
# yourself (docs/deploy-fly.md, "Pinning the base image"): pass the tag with its digest,
#   docker build --build-arg NODE_IMAGE=node:24-slim@sha256:<digest> -t chronos .
# or write that reference as the default below. Both stages must use the same Node binary: the
# compile cache is valid only for the Node that wrote it.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first so that source edits reuse the cached `npm ci` layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# Source maps are left out: the runtime never reads them (Node reads a map only under
# --enable-source-maps) and they are most of the bytes the application adds to the image.
RUN npm run build && find dist -name '*.map' -delete
# Node's compile cache is keyed by Node version, V8 flags and file content (both commands below pass
# the CMD's node flags, so the cache is written as the server runs), is written only when
# a process exits normally, and lives in a subdirectory named after the uid that wrote it
# (v<version>-<arch>-<flags>-<uid>): a cache written by root is never found by the runtime user.
# So it is produced here by the runtime stage's user (`node`, same uid: same base image) and the
# same Node binary, at the same path (/app). First the real start path: start the server with a
# throwaway configuration, wait for /healthz, stop it with SIGTERM (a normal exit, so the cache is
# flushed; a non-zero exit fails the build). Then import every chunk, so the modules loaded only
# after a fire (NAS client, run targets) are cached too. Node writes the cache files readable by
# their owner only; the final chmod lets the runtime user read them once COPY makes them root's.
# `npm run test:image` checks that a start of the image reads the cache.
RUN mkdir /app/.cache && chown node:node /app/.cache
USER node
RUN set -eu; \
    warm=$(mktemp -d); \
    NODE_COMPILE_CACHE=/app/.cache CHRONOS_PROVIDER=builtin CHRONOS_DATA_DIR="$warm" \
      HOST=127.0.0.1 PORT=18080 LOG_LEVEL=warn node --max-semi-space-size=2 --max-old-space-size=256 dist/serve.js & \
    server=$!; \
    node -e "let n=0;const poll=()=>fetch('http://127.0.0.1:18080/healthz').then(r=>{if(!r.ok)throw new Error(String(r.status));process.exit(0)}).catch(()=>{if(++n>300)process.exit(1);setTimeout(poll,100)});poll()"; \
    kill -TERM "$server"; \
    wait "$server"; \
    NODE_COMPILE_CACHE=/app/.cache node --max-semi-space-size=2 --max-old-space-size=256 --input-type=module -e "import{readdirSync}from'node:fs';import{pathToFileURL}from'node:url';for(const f of readdirSync('dist/chunks'))if(f.endsWith('.js'))await import(pathToFileURL('dist/chunks/'+f).href)"; \
    rm -rf "$warm"; \
    test -n "$(ls -A /app/.cache/*-"$(id -u)")"; \
    chmod -R a+rX /app/.cache

FROM ${NODE_IMAGE} AS runtime
# Re-declared to be usable in this stage. VERSION must equal package.json's "version" (a test in
# test/deploy keeps them in step; a Dockerfile cannot read package.json itself).
ARG NODE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="chronos" \
      org.opencontainers.image.description="Cron for deployments that scale to zero: one armed one-shot per job, fired over an authenticated webhook." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
# tini as PID 1 (docs/deploy-fly.md, "PID 1 and tini"): a `command` job that leaves a background
# process behind orphans it, the orphan is re-parented to PID 1, and Node never reaps processes it
# did not start itself, so each one would stay a zombie until the container stops. tini reaps them
# and passes SIGTERM on to Node. -s (subreaper) keeps that true when something else is PID 1
# (`docker run --init`, a platform's own init).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log
# HOST: the server binds loopback by default; a container must listen on every interface.
# NODE_EXTRA_CA_CERTS is deliberately absent: on some Node versions it adds tens of ms to every start.
# Secrets (CHRONOS_ACCESS_TOKEN, CHRONOS_ADMIN_TOKEN) never go here: pass them at run time.
# MALLOC_ARENA_MAX=1: one malloc arena instead of one per thread that ever allocated (V8's helper
# threads, libuv's pool); together with the CMD's heap flags it keeps RSS near a minimal Fastify app's
# (docs/performance.md, "Memory"). `command` jobs inherit it like any variable; one can set its own.
ENV NODE_ENV=production \
    NODE_COMPILE_CACHE=/app/.cache \
    MALLOC_ARENA_MAX=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    CHRONOS_DATA_DIR=/data
WORKDIR /app
# Application files stay owned by root: the runtime user can read them but not change them. The
# compile cache too (its files were made world-readable in the build stage): Node only reads it
# here, and a process cannot rewrite the code cache that later starts trust.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist
COPY --from=build /app/.cache ./.cache
# The directory must exist with the right owner before VOLUME: Docker seeds a new named volume
# from it (Fly.io mounts its volume for the image's user).
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness only: no I/O behind /healthz, and the server leaves it out of the idle countdown, so
# checks cannot keep a scale-to-zero Chronos awake. Exec form, so PORT is read by Node, not a shell.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "-s", "--"]
# The server itself, not `npm start`: SIGTERM reaches Node (through tini) and starts the drain.
# The heap flags keep V8's young generation at 2 x 2 MiB and its old generation's limits small
# (docs/performance.md, "Memory"); on Node 24 neither changes V8's flag hash, so Node's built-in code
# cache and the compile cache above stay valid (flags that do, such as --optimize-for-size or
# --heap-growing-percent, cost ~30 % of the cold start). They are argv, not NODE_OPTIONS, so the jobs
# Chronos starts do not inherit them. The old-space cap is far above what was measured for 10,000
# jobs (docs/performance.md); a much larger store may need it raised (override CMD).
CMD ["node", "--max-semi-space-size=2", "--max-old-space-size=256", "dist/serve.js"]
