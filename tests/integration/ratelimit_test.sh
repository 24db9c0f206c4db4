# ratelimit_test.sh - per-environment rate limits (gateway/ratelimit.h) on a tree with
# TETHER_GW_RATE_API=5/2: a bucket of 5 shared by both gateway processes, the x-ratelimit-*
# headers, 429 with retry-after and x-ratelimit-reset once it is empty, a bucket per environment,
# /realtime not limited by the api group, refilling, the SDK waiting until the reset and
# succeeding, and a malformed setting refused at start (exit 100).
. "$(dirname "$0")/../lib/itest.sh"
trap itest_cleanup EXIT
COMPAT=$(cd "$(dirname "$0")/../compat" && pwd)

code=0
TETHER_GW_RATE_API=5 "$TETHER_TEST_BIN/gateway" >"$TETHER_TEST_TMP/rate_bad.log" 2>&1 || code=$?
is "$code" 100 "TETHER_GW_RATE_API=5 (no /PER_S): exit 100"
ok "... naming the setting" grep -q "TETHER_GW_RATE_API must be BURST/PER_S" "$TETHER_TEST_TMP/rate_bad.log"

tree_start TETHER_GW_RATE_API=5/2
KEY=$(ctl env create --org "rate-$$" --project a --type dev) # its own: the suite runs this file twice (redis_cluster_test.sh)
KEY_B=$(ctl env create --org "rate-$$" --project b --type dev)
D=$(mktemp -d "$TETHER_TEST_TMP/rate.XXXXXX")
whoami() { # whoami KEY N: the Nth call's status and headers in $D/h.N
  curl -s -o /dev/null -D "$D/h.$2" -w '%{http_code}' -H "Authorization: Bearer $1" \
    "$TREE_URL/api/v1/auth/whoami"
}
hdr() { tr -d '\r' <"$D/h.$1" | sed -n "s/^$2: //Ip"; }
codes=""
for i in 1 2 3 4 5 6; do codes+="$(whoami "$KEY" "$i") "; done
is "$codes" "200 200 200 200 200 429 " "five calls in a burst of 5 pass, the sixth is 429"
is "$(hdr 1 x-ratelimit-limit) $(hdr 1 x-ratelimit-remaining)" "5 4" \
  "the first answer: x-ratelimit-limit 5, remaining 4"
is "$(hdr 5 x-ratelimit-remaining)" 0 "the fifth: remaining 0"
ra=$(hdr 6 retry-after)
reset=$(hdr 6 x-ratelimit-reset)
ok "the 429 says retry-after (${ra:-none} s) of 1" test "${ra:-0}" -eq 1
now=$(now_ms)
ok "... and x-ratelimit-reset is a unix time in ms within a second ($((reset - now)) ms)" \
  test "$reset" -gt $((now - 100)) -a "$reset" -le $((now + 1100))
body=$(curl -s -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/auth/whoami")
is "$(jq -r .error <<<"$body")" "Rate limit exceeded" "the 429's body"
is "$(whoami "$KEY_B" 7)" 200 "another environment has a bucket of its own"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
  -d x "$TREE_URL/realtime/v1/sessions/rate-x/in/append")" 404 \
  "/realtime is not limited by the api group (the empty bucket's environment gets its 404, not 429)"
sleep 1.1
is "$(whoami "$KEY" 8)" 200 "after a second the bucket has refilled (2 a second)"

if [[ ! -d $COMPAT/node_modules/@trigger.dev/sdk ]]; then
  (cd "$COMPAT" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
out=$(cd "$COMPAT" && TETHER_URL=$TREE_URL TETHER_SECRET_KEY=$KEY timeout 60 node agent/ratelimit-client.mjs)
diag "SDK: $out"
is "$(jq -r .ok <<<"$out")" true "an SDK call on an empty bucket succeeds in the end"
ok "... after waiting until x-ratelimit-reset, as zodfetch does" \
  test "$(jq -r '.waitedMs >= .resetInMs - 50' <<<"$out")" = true
tree_stop
done_testing
