# gateway_test.sh - the HTTP edge over real HTTP: statuses, bodies and their precedence, CORS on
# normal, preflight and error responses, request ids, URL and header limits, slow clients, secret
# keys (rotation and its grace window), and credentials that must be refused.
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_GW_REQ_TIMEOUT=1s TETHER_GW_AUTH_CACHE_TTL=0
S=$$-$RANDOM
KEY=$(ctl env create --org "gw-$S" --project p --type dev)
ok "a development environment and its key" test -n "$KEY"

# req METHOD PATH [curl args...]: sets CODE, BODY, HDRS
req() {
  local m=$1 p=$2
  shift 2
  HDRS=$(mktemp)
  BODY=$(curl -s -X "$m" -D "$HDRS" -o - -w '\n%{http_code}' "$@" "$TREE_URL$p")
  CODE=${BODY##*$'\n'}
  BODY=${BODY%$'\n'*}
}
hdr() { grep -i "^$1:" "$HDRS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# --- unknown paths and methods
req GET /no/such/thing -H 'Origin: https://app.example'
is "$CODE" 404 "an unknown path is 404"
is "$BODY" '{"error":"Not found"}' "with the JSON body"
is "$(hdr access-control-allow-origin)" https://app.example "404 carries CORS (origin reflected)"
is "$(hdr vary)" Origin "and Vary: Origin"
ok "every response has a request id" test -n "$(hdr x-request-id)"

req GET /api/v1/auth/jwt/claims -H 'Origin: https://app.example'
is "$CODE" 405 "wrong method is 405"
is "$BODY" '{"error":"Method not allowed"}' "405 body"
is "$(hdr allow)" POST "405 names the allowed method"
is "$(hdr access-control-allow-origin)" https://app.example "405 carries CORS"

# --- authentication: 401 bodies of the contract (and 405 comes before 401)
req POST /api/v1/auth/jwt/claims -H 'Origin: https://app.example'
is "$CODE $BODY" '401 {"error":"Invalid API Key"}' "no credential: 401 Invalid API Key"
is "$(hdr access-control-allow-origin)" https://app.example "401 carries CORS"
req POST /api/v1/auth/jwt/claims -H 'Authorization: Bearer pk_dev_abcdefghijklmnopqrst'
is "$CODE $BODY" '401 {"error":"Public API keys are not allowed for this request"}' "pk_ keys: 401"
req POST /api/v1/auth/jwt/claims -H 'Authorization: Bearer tr_dev_notarealkeyatall00'
is "$CODE $BODY" '401 {"error":"Invalid API Key"}' "an unknown secret key: 401"
req POST /api/v1/auth/jwt/claims -H 'Authorization: Bearer whatever'
is "$CODE $BODY" '401 {"error":"Invalid API Key"}' "an unrecognised credential: 401"
req POST /api/v1/auth/jwt/claims -H "Authorization: $KEY"
is "$CODE" 200 "the Bearer prefix is optional"
req POST /api/v1/auth/jwt/claims -H "Authorization: Bearer $KEY"
is "$CODE" 200 "jwt/claims with the secret key"
ENV_ID=$(jq -r .sub <<<"$BODY")
is "$(jq -c . <<<"$BODY")" "{\"sub\":\"$ENV_ID\",\"pub\":true}" "jwt/claims answers {sub, pub: true}"

req GET /api/v1/auth/whoami -H "Authorization: Bearer $KEY"
is "$(jq -r .environment.id <<<"$BODY")" "$ENV_ID" "whoami names the key's environment"
ok "whoami never shows a key" bash -c "! grep -q tr_ <<<'$BODY'"

# --- bodies: size cap (measured on the body itself, chunked too), empty and invalid JSON
big=$(head -c 40000 /dev/zero | tr '\0' a)
req POST /api/v1/sessions -H "Authorization: Bearer $KEY" -H 'Origin: https://app.example' \
  --data-binary "{\"type\":\"$big\"}"
is "$CODE $BODY" '413 {"error":"Request body too large"}' "a body over the route's 32 KiB cap is 413"
is "$(hdr access-control-allow-origin)" https://app.example "the 413 carries CORS"
req POST /api/v1/sessions -H "Authorization: Bearer $KEY" -H 'Transfer-Encoding: chunked' \
  --data-binary "{\"type\":\"$big\"}"
is "$CODE" 413 "a chunked upload over the cap is 413 too"
req POST /api/v1/sessions --data-binary "{\"type\":\"$big\"}"
is "$CODE" 401 "401 comes before 413"
req POST /api/v1/sessions -H "Authorization: Bearer $KEY"
is "$CODE $BODY" '400 {"error":"Request body is empty"}' "an empty body is 400"
req POST /api/v1/sessions -H "Authorization: Bearer $KEY" --data-binary '{"type":'
is "$CODE $BODY" '400 {"error":"Invalid JSON"}' "invalid JSON is 400"
req POST /api/v1/sessions -H "Authorization: Bearer $KEY" --data-binary '{"type":"chat"}'
is "$CODE" 400 "a schema failure is 400"
ok "with a readable message" bash -c "jq -e '.error | test(\"Validation error\")' <<<'$BODY' >/dev/null"

# --- preflight: no auth, the contract's headers
req OPTIONS /api/v1/auth/whoami -H 'Origin: https://app.example' \
  -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: authorization,x-custom'
is "$CODE $BODY" '200 {}' "OPTIONS preflight is 200 {} without auth"
is "$(hdr access-control-allow-origin)" https://app.example "preflight reflects the origin"
is "$(hdr access-control-allow-methods)" GET,HEAD,PUT,PATCH,POST,DELETE "preflight allow-methods"
is "$(hdr access-control-allow-headers)" authorization,x-custom "preflight echoes the requested headers"
is "$(hdr access-control-max-age)" 300 "preflight max-age"
req GET /api/v1/auth/whoami -H "Authorization: Bearer $KEY"
is "$(hdr access-control-allow-origin)" "" "no Origin, no ACAO"
is "$(hdr access-control-expose-headers)" x-trigger-jwt,x-trigger-jwt-claims "the jwt headers are exposed"

# --- limits: URL, headers, slow clients
req GET "/api/v1/auth/whoami?x=$(head -c 9000 /dev/zero | tr '\0' a)"
is "$CODE" 414 "a URL over 8 KiB is 414"
big=$(head -c 17000 /dev/zero | tr '\0' b)
req GET /api/v1/auth/whoami -H "X-Big: $big"
is "$CODE" 431 "headers over 16 KiB are 431"
slow() {
  exec 3<>"/dev/tcp/127.0.0.1/$TREE_PORT" || return 1
  printf 'GET /livez HTTP/1.1\r\nHost: x\r\n' >&3 # and never the blank line
  local t0 out
  t0=$(now_ms)
  out=$(timeout 5 cat <&3)
  exec 3>&-
  SLOW_MS=$(($(now_ms) - t0))
  ((SLOW_MS < 4500))
}
ok "a client that never finishes its request is cut off" slow
diag "slow client closed after ${SLOW_MS}ms (TETHER_GW_REQ_TIMEOUT=1s)"
req GET /livez
is "$CODE" 200 "the gateway still serves"

# --- the console: a page without data for anyone, the process view for a secret key
req GET /console
is "$CODE" 200 "/console serves the page"
is "$(hdr content-type)" "text/html; charset=utf-8" "as HTML"
ok "with a policy that keeps it to this origin, unframed" \
  bash -c "grep -qi \"^content-security-policy: default-src 'none';.*connect-src 'self'.*frame-ancestors 'none'\" '$HDRS'"
ok "the page holds no data: no key, no environment id" bash -c "! grep -qE 'tr_dev_[0-9A-Za-z]{20}|$ENV_ID' <<<\"\$1\"" _ "$BODY"
req POST /console
is "$CODE" 405 "POST /console is 405"
req GET /api/v1/console/processes
is "$CODE" 401 "the process view needs a key"
req GET /api/v1/console/processes -H "Authorization: Bearer $KEY"
is "$CODE" 200 "and answers a secret key"
is "$(jq -r '[.children[].name] | index("stream-broker") != null' <<<"$BODY")" true "with the tree's children"
is "$(jq -r '.leader | type' <<<"$BODY")" boolean "and the leader state"
req GET /api/v1/console/tap
is "$CODE" 401 "the tap view needs a key"
req GET "/api/v1/console/tap?actor=$(printf 'a%.0s' $(seq 1 80))" -H "Authorization: Bearer $KEY"
is "$CODE" 400 "a filter too long for its field is refused"
TAPV=$(curl -s -N --max-time 3 -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/console/tap?type=health.ping" &
  sleep 1.5
  curl -s -o /dev/null "$TREE_URL/healthz"
  wait)
ok "the tap view streams records of its type at once" grep -q '^data: {.*"type":"health.ping"' <<<"$TAPV"
ok "and only those" bash -c "! grep '^data: {\"ts' <<<\"\$1\" | grep -v '\"type\":\"health.ping\"'" _ "$TAPV"

# --- key rotation: the old key works within its grace window, not after it
NEW=$(ctl env rotate-key "$ENV_ID" --grace 2s)
ok "rotate-key prints a new key" bash -c "[[ '$NEW' =~ ^tr_dev_[0-9A-Za-z]{20}$ && '$NEW' != '$KEY' ]]"
req GET /api/v1/auth/whoami -H "Authorization: Bearer $NEW"
is "$CODE" 200 "the new key works"
req GET /api/v1/auth/whoami -H "Authorization: Bearer $KEY"
is "$CODE" 200 "the old key works inside its grace window"
sleep 2.2
req GET /api/v1/auth/whoami -H "Authorization: Bearer $KEY"
is "$CODE" 401 "the old key is refused once the grace window has passed"

# --- a store outage answers 503, not 500, and recovers
ctl_quiet stop session-manager
wait_for 5000 child_state_is session-manager stopped
req GET /api/v1/auth/whoami -H "Authorization: Bearer $NEW"
is "$CODE" 503 "with the session-manager down, authentication answers 503"
is "$(hdr x-should-retry)" true "and tells the client to retry"
ctl_quiet start session-manager
wait_for 5000 child_state_is session-manager up
ok "and recovers" wait_for 3000 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $NEW' $TREE_URL/api/v1/auth/whoami) == 200 ]]"

# every answer carries its length, so a client keeps its connection whatever the status
KA=$(curl -sv -o /dev/null -o /dev/null -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/sessions/nope-1" \
  "$TREE_URL/api/v1/sessions/nope-2" 2>&1)
ok "a 404 keeps the connection for the next request" grep -q 'Re-using existing connection' <<<"$KA"
is "$(grep -ci '^< content-length: [0-9]' <<<"$KA")" 2 "with Content-Length"

tree_stop
ok "no secret key or token in the gateway's logs" \
  bash -c "! grep -E 'tr_(dev|stg|prod|preview)_[0-9A-Za-z]{20}|eyJ[A-Za-z0-9_-]{8,}\.eyJ' '$TREE_LOG'"
done_testing
