# chaos_test.sh - the short form of the chaos suite (tests/chaos/chaos.sh --short, docs/chaos.md):
# 45 s of mixed load while a nemesis kills each actor and a gateway every 2 s in turn, faults
# the bus (drop 10 %, delay 200 ms, duplicate 5 %), stops the run-manager and pauses Redis and
# PostgreSQL; then every anomaly kind of the checker must be 0. `make chaos` is the long form.
. "$(dirname "$0")/../lib/itest.sh"

OUT=$TETHER_TEST_TMP/chaos
SEED=${TETHER_CHAOS_SEED:-$(( $(date +%s) % 1000000 ))}
# chaos.sh bounds its own phases (docs/chaos.md); the timeout here is the last resort that
# still leaves time to print what it wrote before the suite's 300 s for this file run out
timeout --kill-after=5 270 "$(dirname "$0")/../chaos/chaos.sh" "$(dirname "$TETHER_TEST_BIN")" \
  --short --seed "$SEED" --out "$OUT" >"$TETHER_TEST_TMP/chaos.out" 2>&1
rc=$?
((rc == 124)) && diag "chaos.sh did not end within 270 s"
if ((rc != 0)); then # keep what replays it: the suite's temporary directory goes away
  KEEP=$(dirname "$TETHER_TEST_BIN")/chaos/$SEED
  mkdir -p "$KEEP" && cp -r "$OUT"/. "$KEEP"/ && diag "kept in $KEEP; replay: tests/chaos/chaos.sh $(dirname "$TETHER_TEST_BIN") --short --seed $SEED"
fi
sed 's/^/# /' "$TETHER_TEST_TMP/chaos.out"
R=$OUT/report.json
ok "the run finished and the checker read its history" test -s "$R"
for kind in lost_append duplicate order phantom sse_gap sse_repeat sse_mismatch two_live_runs \
  after_close undocumented_error retries_exhausted echo_unanswered replica_divergence unverifiable; do
  is "$(jq -r ".anomalies.$kind // \"missing\"" "$R" 2>/dev/null)" 0 "no $kind (seed $SEED)"
done
ok "the load held: over 1,000 appends acknowledged" test "$(jq -r '.stats.ops.append.ok // 0' "$R")" -gt 1000
ok "the nemesis acted: at least 10 faults" test "$(jq -r '.stats.nemesis // 0' "$R")" -ge 10
ok "subscribers received records across reconnects" test "$(jq -r '.stats.sse.records // 0' "$R")" -gt 100
is "$rc" 0 "chaos.sh exits 0 (history: $OUT/history.jsonl)"
done_testing
