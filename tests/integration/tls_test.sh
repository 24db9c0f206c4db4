# tls_test.sh - TLS on the gateway's port (gateway/tls.h) with a self-signed certificate made
# here: HTTP/1.1 and HTTP/2 are chosen by ALPN, the API answers over HTTP/1.1, the SDK's
# streaming writer (S2 append sessions) works over HTTP/2 with an https X-S2-Endpoint, plain
# HTTP gets no answer, and a certificate without its key is a configuration error (exit 100).
. "$(dirname "$0")/../lib/itest.sh"
trap itest_cleanup EXIT
COMPAT=$(cd "$(dirname "$0")/../compat" && pwd)

D=$(mktemp -d "$TETHER_TEST_TMP/tls.XXXXXX")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
ok "a self-signed certificate for 127.0.0.1" test -s "$D/cert.pem"

# --- one of the two variables alone: the gateway refuses to start
code=0
TETHER_GW_TLS_CERT=$D/cert.pem "$TETHER_TEST_BIN/gateway" >"$D/alone.log" 2>&1 || code=$?
is "$code" 100 "TETHER_GW_TLS_CERT without TETHER_GW_TLS_KEY: exit 100 (configuration)"
ok "... saying the two go together" grep -q "go together" "$D/alone.log"
code=0
TETHER_GW_TLS_CERT=$D/cert.pem TETHER_GW_TLS_KEY=$D/cert.pem "$TETHER_TEST_BIN/gateway" \
  >"$D/badkey.log" 2>&1 || code=$?
is "$code" 100 "a key file holding no key: exit 100"

# --- a tree with TLS
tree_start_nowait TETHER_GW_TLS_CERT="$D/cert.pem" TETHER_GW_TLS_KEY="$D/key.pem"
TREE_URL=https://127.0.0.1:$TREE_PORT
CURL=(curl -s --cacert "$D/cert.pem" --max-time 5)
https_healthy() { [[ $("${CURL[@]}" -o /dev/null -w '%{http_code}' "$TREE_URL/healthz") == 200 ]]; }
ok "/healthz over TLS answers 200 (HTTP/1.1 by ALPN)" wait_for 15000 https_healthy
is "$("${CURL[@]}" --http1.1 -o /dev/null -w '%{http_version}' "$TREE_URL/livez")" 1.1 \
  "a client offering http/1.1 gets HTTP/1.1"
is "$("${CURL[@]}" --http2 -o /dev/null -w '%{http_version} %{http_code}' "$TREE_URL/livez")" \
  "1.1 200" "a client offering h2 and http/1.1 gets HTTP/1.1 and the whole API"
# a client offering h2 alone (as S2's does) gets HTTP/2, which serves the append sessions only
h2=$(cd "$COMPAT" && NODE_EXTRA_CA_CERTS=$D/cert.pem node -e '
  const h2 = require("node:http2").connect(process.argv[1]);
  const r = h2.request({ ":path": "/livez" });
  let body = "";
  r.on("response", (h) => (status = h[":status"]));
  r.on("data", (d) => (body += d));
  r.on("end", () => { console.log(status, JSON.parse(body).code); h2.close(); });
  let status;' "$TREE_URL")
is "$h2" "404 not_found" "a client offering h2 alone gets HTTP/2: append sessions only, else 404 in S2's shape"
plain=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$TREE_PORT/livez")
is "$plain" 000 "plain HTTP on the TLS port gets no HTTP answer"

KEY=$(ctl env create --org tls --project a --type dev)
is "$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
  "$TREE_URL/api/v1/auth/whoami")" 200 "the API over TLS with the secret key"

if [[ ! -d $COMPAT/node_modules/@trigger.dev/sdk ]]; then
  (cd "$COMPAT" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
out=$(cd "$COMPAT" && TETHER_URL=$TREE_URL TETHER_SECRET_KEY=$KEY NODE_EXTRA_CA_CERTS=$D/cert.pem \
  timeout 60 node agent/tls-writer.mjs 2>"$D/writer.err")
diag "writer: $out"
is "$(jq -r .endpoint <<<"$out")" "$TREE_URL/s2/v1" "PUT .../out hands out an https X-S2-Endpoint"
is "$(jq -r '"\(.stored) \(.inOrder)"' <<<"$out")" "100 true" \
  "the SDK's streaming writer over TLS + HTTP/2: 100 chunks stored, in order"
ok "the gateway logged the append session" grep -q 'gw.s2s_session.*200 after' "$TREE_LOG"

tree_stop
done_testing
