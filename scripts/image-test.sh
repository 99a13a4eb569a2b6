#!/usr/bin/env bash
# npm run test:image: build the image from this checkout's Dockerfile and check, in the real image,
# what `npm test` can only check statically (test/deploy): the compile cache is READ by the image's
# user at start, tini reaps the orphans a `command` job leaves behind, the labels, no source maps.
# Not part of `npm run check`: it needs a container engine and takes minutes. docs/deploy-fly.md
# ("Checking the image") describes it.
#
# Environment:
#   CHRONOS_IMAGE         image reference to build and test (default chronos:test)
#   CHRONOS_IMAGE_BUILD   command that builds CHRONOS_IMAGE from the checkout (default: docker build)
#   SKIP_BUILD=1          test CHRONOS_IMAGE as it is
#   CHRONOS_IMAGE_RUNNER  docker (default), podman, or a script that runs the image like `docker run`:
#                         called as RUNNER [-e K=V]... [-v HOSTDIR:DIR] [-- ARGV...] with the image in
#                         $IMAGE, ARGV replacing both ENTRYPOINT and CMD, none meaning the image's own
#   CHRONOS_IMAGE_INSPECT command printing the image's JSON config (default `RUNNER image inspect`,
#                         which a script runner must replace, e.g. `buildah inspect --type image`)
#   IMAGE_TEST_TIMEOUT    seconds one container run may take before it counts as hung (default 180)
#   PROBE_ROUNDS          starts timed with and without the compile cache (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${CHRONOS_IMAGE:-chronos:test}
RUNNER=${CHRONOS_IMAGE_RUNNER:-docker}
export IMAGE
failures=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }

engine() { [ "$RUNNER" = docker ] || [ "$RUNNER" = podman ]; }

# run_image [-e K=V]... [-v HOST:CTR] [--entrypoint] [-- ARGV...]
#   without --entrypoint: ARGV replaces CMD (the image's ENTRYPOINT stays); no ARGV: CMD as well.
#   with --entrypoint: ARGV replaces ENTRYPOINT and CMD.
run_image() {
  local envs=() vol=() replace=0
  while [ $# -gt 0 ]; do
    case "$1" in
      -e) envs+=(-e "$2"); shift 2 ;;
      -v) vol=(-v "$2"); shift 2 ;;
      --entrypoint) replace=1; shift ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  if engine; then
    local ep=()
    if [ "$replace" = 1 ]; then ep=(--entrypoint "$1"); shift; fi
    "$RUNNER" run --rm "${envs[@]}" "${vol[@]}" "${ep[@]}" "$IMAGE" "$@"
  else
    if [ $# -gt 0 ] && [ "$replace" = 0 ]; then
      set -- $(entrypoint) "$@"
    fi
    if [ $# -gt 0 ]; then "$RUNNER" "${envs[@]}" "${vol[@]}" -- "$@"; else "$RUNNER" "${envs[@]}" "${vol[@]}"; fi
  fi
}

inspect() {
  if [ -n "${CHRONOS_IMAGE_INSPECT:-}" ]; then $CHRONOS_IMAGE_INSPECT "$IMAGE"; else "$RUNNER" image inspect "$IMAGE"; fi
}

# The image config, whichever shape the tool prints (docker/podman: [{Config}], buildah: {Docker:{config}}).
config_field() {
  node -e '
    let d = JSON.parse(require("fs").readFileSync(0, "utf8"));
    if (Array.isArray(d)) d = d[0];
    const c = d.Docker?.config ?? (typeof d.Config === "object" ? d.Config : null) ?? {};
    process.stdout.write(JSON.stringify(c[process.argv[1]] ?? null));' "$1" <<<"$CONFIG"
}

entrypoint() { node -e 'for (const a of JSON.parse(process.argv[1]) ?? []) console.log(a)' "$(config_field Entrypoint)"; }

if [ "${SKIP_BUILD:-}" != 1 ]; then
  echo "--- building $IMAGE"
  if [ -n "${CHRONOS_IMAGE_BUILD:-}" ]; then $CHRONOS_IMAGE_BUILD; else "$RUNNER" build -t "$IMAGE" .; fi
fi
CONFIG=$(inspect)
export CONFIG RUNNER
export -f run_image engine entrypoint config_field
# A run that never ends (a job that never fired, a signal that was lost) fails instead of hanging.
bounded_run() { timeout "${IMAGE_TEST_TIMEOUT:-180}" bash -c 'run_image "$@"' run_image "$@"; }

echo "--- labels"
version=$(node -p 'require("./package.json").version')
labels=$(config_field Labels)
label() { node -e 'process.stdout.write(String((JSON.parse(process.argv[1]) ?? {})[process.argv[2]] ?? ""))' "$labels" "$1"; }
[ "$(label org.opencontainers.image.version)" = "$version" ] \
  && pass "org.opencontainers.image.version is package.json's $version" \
  || fail "org.opencontainers.image.version is '$(label org.opencontainers.image.version)', package.json says $version"
for name in title licenses base.name; do
  [ -n "$(label "org.opencontainers.image.$name")" ] && pass "org.opencontainers.image.$name = $(label "org.opencontainers.image.$name")" \
    || fail "org.opencontainers.image.$name is missing"
done

echo "--- files"
files=$(bounded_run --entrypoint -- sh -c 'find /app -name "*.map" | wc -l; find /app -name node_modules | wc -l; du -sk /app | cut -f1')
read -r maps modules appkb <<<"$(echo $files)"
[ "$maps" = 0 ] && pass "no source maps under /app" || fail "$maps source maps under /app"
[ "$modules" = 0 ] && pass "no node_modules under /app" || fail "node_modules under /app"
echo "      /app holds ${appkb} KiB"

echo "--- compile cache, read as the image's user (NODE_DEBUG_NATIVE=COMPILE_CACHE)"
# Passed as a data: URL, so that no runner has to quote a multi-line argument.
probe=$(bounded_run -e "PROBE_ROUNDS=${PROBE_ROUNDS:-7}" --entrypoint -- \
  node -e "import('data:text/javascript;base64,$(base64 -w0 scripts/image-probe.mjs)')")
echo "      $probe"
check() { node -e "const p = JSON.parse(process.argv[1]); process.exit(($1) ? 0 : 1)" "$probe"; }
check 'p.uid !== 0' && pass "runs as a non-root uid" || fail "probe ran as root"
check 'p.debugExit.code === 0' && pass "server exits 0 on SIGTERM" || fail "server exit: $(node -p 'JSON.stringify(JSON.parse(process.argv[1]).debugExit)' "$probe")"
check 'p.cache.dir && p.cache.dir.endsWith("-" + p.uid)' && pass "cache directory is the image user's: $(node -p 'JSON.parse(process.argv[1]).cache.dir' "$probe")" \
  || fail "cache directory is not the image user's"
check 'p.cache.problems.length === 0' && pass "no compile cache errors" || fail "compile cache errors: $(node -p 'JSON.parse(process.argv[1]).cache.problems.join("; ")' "$probe")"
check 'p.cache.accepted.some((u) => u.endsWith("/dist/serve.js"))' && pass "dist/serve.js compiled from the cache" \
  || fail "dist/serve.js was not read from the cache"
check 'p.cache.notAccepted.length === 0' \
  && pass "every module loaded at start came from the cache ($(node -p 'JSON.parse(process.argv[1]).cache.accepted.length' "$probe"))" \
  || fail "modules not in the cache: $(node -p 'JSON.parse(process.argv[1]).cache.notAccepted.join(" ")' "$probe")"
node -e '
  const p = JSON.parse(process.argv[1]);
  console.log(`      spawn -> listening, median of ${p.rounds} interleaved starts: with the cache ${p.medianMs.cache} ms wall,`
    + ` ${p.medianCpuMs.cache} ms CPU; without ${p.medianMs.noCache} ms wall, ${p.medianCpuMs.noCache} ms CPU`);' "$probe"

echo "--- PID 1: a command job that leaves an orphan behind"
# The job starts three background processes and returns without waiting for them; they end 0.1 s
# later as orphans. After a second, it counts zombies (and who PID 1 is), then stops Chronos with
# SIGTERM from inside, so the container ends on its own.
zombie_run() {
  local dir
  dir=$(mktemp -d)
  cat >"$dir/jobs.json" <<'EOF'
{ "jobs": [ { "id": "orphans", "schedule": "in 1s", "target": { "type": "command", "argv": ["sh", "-c",
  "for i in 1 2 3; do sh -c 'sleep 0.1 </dev/null >/dev/null 2>&1 &'; done; sleep 1; grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status 2>/dev/null | wc -l > /data/zombies; tr '\\0' ' ' < /proc/1/cmdline > /data/pid1; kill -TERM $PPID"] } } ] }
EOF
  chown -R 1000:1000 "$dir" 2>/dev/null || chmod -R a+rwX "$dir"
  local status=0
  bounded_run -e CHRONOS_PROVIDER=builtin -e CHRONOS_JOBS_FILE=/data/jobs.json -e LOG_LEVEL=warn \
    -v "$dir:/data" "$@" >"$dir/log" 2>&1 || status=$?
  echo "$status $(cat "$dir/zombies" 2>/dev/null || echo '?') $(cat "$dir/pid1" 2>/dev/null)"
  rm -rf "$dir"
}
read -r status zombies pid1 <<<"$(zombie_run)"
echo "      image's ENTRYPOINT+CMD: PID 1 = $pid1, zombies = $zombies, exit status $status"
[ "$zombies" = 0 ] && pass "no zombies with the image's entrypoint" || fail "$zombies zombies with the image's entrypoint"
[ "$status" = 0 ] && pass "exit status 0 after SIGTERM" || fail "exit status $status after SIGTERM"
read -r status zombies pid1 <<<"$(zombie_run --entrypoint -- node dist/serve.js)"
echo "      node as PID 1 (no init), for contrast: PID 1 = $pid1, zombies = $zombies, exit status $status"
[ "$zombies" != 0 ] && [ "$zombies" != '?' ] && pass "the probe does see zombies when Node is PID 1" \
  || fail "the probe saw no zombies under Node as PID 1 (the check above proves nothing)"

echo
if [ "$failures" = 0 ]; then echo "image checks passed"; else echo "$failures image check(s) failed"; exit 1; fi
