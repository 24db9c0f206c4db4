#!/usr/bin/env bash
# http_auth.sh BUILD_DIR: what authentication costs at the gateway, measured in one run with wrk
# (64 connections, 2 threads, loopback): GET /livez (no auth, no bus) against
# GET /api/v1/auth/whoami with a secret key and with a public token (HS256 JWT). Starts its own
# stores and tree in a temporary directory and stops them after.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
BUILD=$(cd -- "${1:?usage: http_auth.sh BUILD_DIR}" && pwd -P)
DUR=${TETHER_BENCH_SECONDS:-5}
cd "$ROOT"
. "$ROOT/tests/bench/lib.sh"
bench_tree_start
KEY=$("$BUILD/bin/tetherctl" env create --org bench --project bench --type dev)
ENV_ID=$(curl -s -X POST -H "Authorization: Bearer $KEY" "$URL/api/v1/auth/jwt/claims" | jq -r .sub)
# a token the way the SDK makes one: HS256 over the secret key, iss/aud, 15 minutes
b64() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
H=$(printf '{"alg":"HS256"}' | b64)
P=$(printf '{"sub":"%s","pub":true,"scopes":["read:sessions"],"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev","iat":%d,"exp":%d}' "$ENV_ID" "$now" $((now + 900)) | b64)
S=$(printf '%s.%s' "$H" "$P" | openssl dgst -sha256 -hmac "$KEY" -binary | b64)
JWT="$H.$P.$S"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $JWT" "$URL/api/v1/auth/whoami") == 200 ]] || {
  echo "the benchmark token was refused" >&2
  exit 1
}
run() {
  local name=$1
  shift
  local rps
  rps=$(wrk -t2 -c64 -d"${DUR}s" "$@" | awk '/Requests\/sec/ {print $2}')
  printf '{"case":"%s","requests_per_s":%s}\n' "$name" "$rps"
  eval "R_$name=$rps"
}
echo "== gateway: authentication cost (wrk -t2 -c64 -d${DUR}s, 2 gateway processes)"
run livez_no_auth "$URL/livez"
run whoami_secret_key -H "Authorization: Bearer $KEY" "$URL/api/v1/auth/whoami"
run whoami_jwt -H "Authorization: Bearer $JWT" "$URL/api/v1/auth/whoami"
run whoami_no_auth_401 "$URL/api/v1/auth/whoami"
# h2o closes the connection after a 401, so the unauthenticated case reconnects every request:
# the fair measure of what JWT validation costs is the same route with a cached secret key.
echo "summary: JWT ${R_whoami_jwt}/s vs secret key ${R_whoami_secret_key}/s on the same authenticated route: JWT validation costs $(
  awk -v a="$R_whoami_jwt" -v b="$R_whoami_secret_key" 'BEGIN{printf "%.1f%%", (b-a)*100/b}') of throughput; /livez (no auth, no pipeline) ${R_livez_no_auth}/s; unauthenticated 401 ${R_whoami_no_auth_401}/s (h2o closes those connections)"
