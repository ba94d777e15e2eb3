#!/usr/bin/env bash
# Whole-run figures for one server per run: the 40 database tests of
# tests/db_suite.rs under `cargo nextest run` and `cargo test`, with sharing
# on (the default) and with TESTDOCK_SHARE=process, side by side; then the
# edit-run loop with TESTDOCK_REUSE: one test run twice.
#   bash examples/sharing.sh
# Prints wall time and PostgreSQL servers started per way, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
unset CI TESTDOCK_REUSE TESTDOCK_SHARE TESTDOCK_RUN_ID NEXTEST_RUN_ID

# Built first: the timings below are of running, not compiling.
cargo test --test db_suite --no-run -q
cargo nextest run --test db_suite --no-run >/dev/null

# Waits (30 s at most) until the runs' resources are gone, so one way's
# server never serves the next. (Other runs' would wait it out: run this
# on a quiet daemon.)
settle() {
  for _ in $(seq 1 150); do
    [ "$(docker ps -aq --filter label=testdock.managed --filter label=testdock.run | wc -l)" -eq 0 ] && return
    sleep 0.2
  done
}

declare -A wall servers
# Set to 0 for a way that must find the previous way's server: the rerun.
settle_first=1
run_way() { # name, env assignments..., -- command...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  [ "$settle_first" = 1 ] && settle
  local t0 t1 ids=/tmp/testdock-sharing-servers-$$
  rm -f "$ids"; t0=$(date +%s.%N)
  env TESTDOCK_BENCH_SERVERS="$ids" "${envs[@]}" "$@" >/tmp/testdock-sharing-$$.log 2>&1 ||
    { cat /tmp/testdock-sharing-$$.log; echo "sharing: $name failed"; exit 1; }
  t1=$(date +%s.%N)
  wall[$name]=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  # Distinct servers the tests were given; a reused one was not started.
  servers[$name]=$(sort -u "$ids" | wc -l)
  sort -u "$ids" >"/tmp/testdock-sharing-ids-$$-${name//[^a-z0-9]/_}"
  rm -f "$ids"
}

nextest=(cargo nextest run --test db_suite --run-ignored all --no-fail-fast)
cargotest=(cargo test -q --test db_suite -- --include-ignored)
run_way "nextest, shared"      X=1 -- "${nextest[@]}"
run_way "nextest, per process" TESTDOCK_SHARE=process -- "${nextest[@]}"
run_way "cargo test, shared"      X=1 -- "${cargotest[@]}"
run_way "cargo test, per process" TESTDOCK_SHARE=process -- "${cargotest[@]}"
one=(cargo nextest run --test db_suite --run-ignored all -E 'test(=db_01)')
run_way "one test, cold"            X=1 -- "${one[@]}"
# A short idle time: the reused server removes itself soon after.
run_way "one test, reuse (1st run)" TESTDOCK_REUSE=20s -- "${one[@]}"
# Not settled first: the rerun must find the server the 1st run left.
settle_first=0
run_way "one test, reuse (rerun)"   TESTDOCK_REUSE=20s -- "${one[@]}"
settle_first=1
id_file() { echo "/tmp/testdock-sharing-ids-$$-${1//[^a-z0-9]/_}"; }
if cmp -s "$(id_file "one test, reuse (1st run)")" "$(id_file "one test, reuse (rerun)")"; then
  servers["one test, reuse (rerun)"]="1 (joined)"
else
  servers["one test, reuse (rerun)"]="1 (NOT the 1st run's)"
fi
rm -f /tmp/testdock-sharing-ids-$$-*

printf '%-28s %10s %8s\n' way "wall (s)" "servers used"
for k in "nextest, shared" "nextest, per process" "cargo test, shared" "cargo test, per process" \
         "one test, cold" "one test, reuse (1st run)" "one test, reuse (rerun)"; do
  printf '%-28s %10s %8s\n' "$k" "${wall[$k]}" "${servers[$k]}"
done
ratio() { python3 -c "print(f'{$1 / $2:.1f}x')"; }
echo "nextest: shared is $(ratio "${wall[nextest, per process]}" "${wall[nextest, shared]}") faster than per process"
echo "cargo test: shared is $(ratio "${wall[cargo test, per process]}" "${wall[cargo test, shared]}") faster than per process"
echo "reuse: a warm rerun of one test is $(ratio "${wall[one test, cold]}" "${wall[one test, reuse (rerun)]}") faster than a cold one"
echo "(the reused server removes itself once idle for 20 s)"
rm -f /tmp/testdock-sharing-$$.log
