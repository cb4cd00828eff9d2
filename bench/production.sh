#!/usr/bin/env bash
# The production benchmark matrix (BenchmarkProduction, bench/production_test.go)
# on this machine's Nix, then on Debian trixie's (Nix 2.26) in its chroot
# (scripts/nix-chroot makes it once per machine), and both results at the end.
#
#   bench/production.sh                 the whole matrix, -benchtime 3x, both legs
#   bench/production.sh 'Production/fixture=real/cache=xz'     a subset (a -bench pattern)
#
# Environment: BENCHTIME (default 3x); LEGS (default "host trixie"; a leg is
# host or a Debian suite that scripts/nix-chroot knows); BENCH_REAL_SCALE and
# BENCH_COLD_DEPTH/_WIDTH/_BYTES shrink the fixtures (see production_test.go);
# BENCH_NIX_INIT_ARGS and BENCH_NIX_INIT_ENV add a variant, nix-init-extra,
# with those arguments and VAR=value settings.
# The whole matrix takes about 35 minutes a leg on 2 cores. Nodes live under
# /dev/shm (a tmpfs, inside the chroot too): see BenchmarkColdStart.
# Each leg's full output is kept in a directory printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

pattern=${1:-Production}
benchtime=${BENCHTIME:-3x}
read -r -a legs <<<"${LEGS:-host trixie}"
out=$(mktemp -d "${TMPDIR:-/tmp}/bench-production.XXXXXX")

# The fixtures' knobs cross into the chroot, whose environment is reset.
knobs=(TMPDIR=/dev/shm)
for v in BENCH_REAL_SCALE BENCH_COLD_DEPTH BENCH_COLD_WIDTH BENCH_COLD_BYTES BENCH_NIX_INIT_ARGS BENCH_NIX_INIT_ENV; do
	if [ -n "${!v:-}" ]; then knobs+=("$v=${!v}"); fi
done
cmd=(go test ./bench -run '^$' -bench "$pattern" -benchtime "$benchtime" -timeout 120m)

status=0
for leg in "${legs[@]}"; do
	start=$SECONDS
	echo "production.sh: $leg: ${cmd[*]}" >&2
	if [ "$leg" = host ]; then
		env "${knobs[@]}" "${cmd[@]}" 2>&1 | tee "$out/$leg.txt" || status=1
	else
		scripts/nix-chroot make "$leg"
		scripts/nix-chroot run "$leg" env "${knobs[@]}" "${cmd[@]}" 2>&1 | tee "$out/$leg.txt" || status=1
	fi
	echo "production.sh: $leg done in $((SECONDS - start))s" >&2
done

# Each case's summary (the fixture, the cache, every variant's median and
# the ratios), leg by leg; the raw benchmark lines are in the files.
for leg in "${legs[@]}"; do
	echo
	echo "===== $leg: $(grep -m1 -o 'Nix [0-9][^,]*' "$out/$leg.txt" || echo 'Nix ?') ====="
	awk '/^--- (BENCH|FAIL)/ {p = 1; print; next} /^[^ \t]/ {p = 0} p' "$out/$leg.txt"
	grep -E '^(ok|FAIL|PASS)' "$out/$leg.txt" || true
done
echo
echo "production.sh: full output in $out" >&2
exit $status
