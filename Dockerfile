# Chronos container image. Two stages: `build` compiles the bundle and its V8 compile cache,
# `runtime` ships only dist/, package.json and that cache. esbuild bundles every runtime
# dependency into dist/, so the runtime stage needs no node_modules at all (test/deploy checks
# this by starting the bundle from a directory that has none).
#
# Build:  docker build -t chronos .
#         docker build --build-arg NODE_IMAGE=node:24.11-slim -t chronos .   # pin a tag
# Run:    docker run --init -p 8080:8080 -v chronos-data:/data --env-file chronos.env chronos

ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first so that source edits reuse the cached `npm ci` layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build
# Node's compile cache is keyed by Node version and file content and is written only when a
# process exits normally, so it is produced here, by the same Node binary the runtime stage
# runs, at the same path (/app). First the real start path: start the server with a throwaway
# configuration, wait for /healthz, stop it with SIGTERM (a normal exit, so the cache is
# flushed; a non-zero exit fails the build). Then import every chunk, so the modules loaded
# only after a fire (NAS client, run targets) are cached too.
RUN set -eu; \
    mkdir -p /tmp/warm-data; \
    NODE_COMPILE_CACHE=/app/.cache CHRONOS_PROVIDER=builtin CHRONOS_DATA_DIR=/tmp/warm-data \
      HOST=127.0.0.1 PORT=18080 LOG_LEVEL=warn node dist/serve.js & \
    server=$!; \
    node -e "let n=0;const poll=()=>fetch('http://127.0.0.1:18080/healthz').then(r=>{if(!r.ok)throw new Error(String(r.status));process.exit(0)}).catch(()=>{if(++n>300)process.exit(1);setTimeout(poll,100)});poll()"; \
    kill -TERM "$server"; \
    wait "$server"; \
    NODE_COMPILE_CACHE=/app/.cache node --input-type=module -e "import{readdirSync}from'node:fs';import{pathToFileURL}from'node:url';for(const f of readdirSync('dist/chunks'))if(f.endsWith('.js'))await import(pathToFileURL('dist/chunks/'+f).href)"; \
    rm -rf /tmp/warm-data; \
    test -n "$(ls -A /app/.cache)"

FROM ${NODE_IMAGE} AS runtime
# HOST: the server binds loopback by default; a container must listen on every interface.
# NODE_EXTRA_CA_CERTS is deliberately absent: on some Node versions it adds tens of ms to every start.
# Secrets (CHRONOS_ACCESS_TOKEN, CHRONOS_ADMIN_TOKEN) never go here: pass them at run time.
ENV NODE_ENV=production \
    NODE_COMPILE_CACHE=/app/.cache \
    HOST=0.0.0.0 \
    PORT=8080 \
    CHRONOS_DATA_DIR=/data
WORKDIR /app
# Application files stay owned by root: the runtime user can read them but not change them.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist
COPY --from=build /app/.cache ./.cache
# The directory must exist with the right owner before VOLUME: Docker seeds a new named volume
# from it (Fly.io mounts its volume for the image's user).
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness only (no I/O behind /healthz). Exec form, so PORT is read by Node, not by a shell.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The server itself, not `npm start`: SIGTERM reaches Node directly and starts the drain.
CMD ["node", "dist/serve.js"]
