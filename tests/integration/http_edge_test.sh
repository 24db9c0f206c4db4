# http_edge_test.sh - what a hostile client can do to the HTTP edge before any route runs: public
# tokens with exp/nbf/iat of the wrong type, or none; request framing that a proxy in front could
# read differently (two Content-Length headers, Content-Length with chunked, an absurd chunk
# size), each refused with 400 at once; and the Host header, which never picks the X-S2-Endpoint
# the gateway hands out unless TETHER_GW_ALLOWED_HOSTS vouches for it (421 otherwise).
. "$(dirname "$0")/../lib/itest.sh"

tree_start TETHER_GW_AUTH_CACHE_TTL=0
S=$$-$RANDOM
KEY=$(ctl env create --org "edge-$S" --project p --type dev)
ok "a development environment and its key" test -n "$KEY"
ENV_ID=$(curl -s -X POST -H "Authorization: Bearer $KEY" "$TREE_URL/api/v1/auth/jwt/claims" | jq -r .sub)

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# --- public tokens: exp, nbf and iat are NumericDates; exp is required
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
mint() { # mint EXTRA: a token signed with the environment's key; EXTRA is added to its claims
  local h p s
  h=$(printf '%s' '{"alg":"HS256"}' | b64url)
  p=$(printf '{"sub":"%s","pub":true,"scopes":["admin"],"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev"%s}' \
    "$ENV_ID" "$1" | b64url)
  s=$(printf '%s' "$h.$p" | openssl dgst -sha256 -hmac "$KEY" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}
NOW=$(date +%s)
tok_code() { code -H "Authorization: Bearer $(mint "$1")" "$TREE_URL/api/v1/sessions/nope-$S"; }
is "$(tok_code ",\"exp\":$((NOW + 60))")" 404 "a good token passes authentication (the session is unknown)"
is "$(tok_code ",\"exp\":$((NOW + 60)).0")" 404 "exp written 1.0 is the integer 1"
is "$(tok_code ",\"exp\":410244479903652423")" 404 "an exp far in the future passes (its cache lifetime does not overflow)"
is "$(tok_code ",\"exp\":410244479903652423")" 404 "and passes again from the token cache"
for bad in 0 0.5 '"1"' "\"$((NOW + 60))\"" null; do
  is "$(tok_code ",\"exp\":$bad")" 401 "exp: $bad is refused"
done
is "$(tok_code "")" 401 "a token without exp is refused"
is "$(tok_code ",\"exp\":$((NOW + 60)),\"nbf\":\"$((NOW + 30))\"")" 401 "nbf as a string is refused"
is "$(tok_code ",\"exp\":$((NOW + 60)),\"nbf\":$((NOW + 30))")" 401 "nbf in the future is refused"
is "$(tok_code ",\"exp\":$((NOW + 60)),\"iat\":\"now\"")" 401 "iat as a string is refused"
B=$(curl -s -H "Authorization: Bearer $(mint ',"exp":0')" "$TREE_URL/api/v1/sessions/nope-$S")
is "$(jq -r .error <<<"$B" | cut -d. -f1)" "Public Access Token has expired" "exp: 0 expired at the epoch"

# --- request framing, over a raw socket
# raw REQUEST [N]: sends REQUEST (printf escapes) on one connection, reads until N answers
# (default 1) or EOF, and prints "STATUSES MS": the status codes (comma-separated) and the time
# taken. "|WAIT|" in REQUEST waits for one more answer before sending what follows.
raw() {
  python3 - "$TREE_PORT" "$1" "${2:-1}" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
t0 = time.monotonic()
parts = sys.argv[2].split("|WAIT|")
data, codes = b"", []
try:
    for i, part in enumerate(parts):
        s.sendall(part.encode().decode("unicode_escape").encode("latin-1"))
        want = int(sys.argv[3]) if i == len(parts) - 1 else len(codes) + 1
        while len(codes) < want:
            d = s.recv(65536)
            if not d:
                break
            data += d
            while b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if len(rest) < (n[0] if n else 0):
                    break
                codes.append(head.split(b" ")[1].decode())
                data = rest[n[0] if n else 0:]
except (socket.timeout, ConnectionError):
    pass
print(",".join(codes) or "none", int((time.monotonic() - t0) * 1000))
EOF
}
AUTH="Authorization: Bearer $KEY"
BODY='{"type":"chat"}'
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nContent-Length: 15\r\nContent-Length: 3\r\n\r\n$BODY")
is "$st" 400 "two Content-Length headers that differ: 400"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nContent-Length: 15\r\nContent-Length: 15\r\n\r\n$BODY")
is "$st" 400 "two Content-Length headers, even equal: 400"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\ncontent-length: 3\r\nTransfer-Encoding: chunked\r\n\r\nf\r\n$BODY\r\n0\r\n\r\n")
is "$st" 400 "Content-Length with Transfer-Encoding: chunked: 400"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
is "$st" 400 "two Transfer-Encoding headers: 400"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc")
is "$st" 400 "a chunk size of ffffffffffffffff: 400"
ok "within 1 s (took ${ms} ms)" test "$ms" -lt 1000
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nTransfer-Encoding: chunked\r\n\r\n300000\r\nabc")
is "$st" 400 "a chunk larger than TETHER_GW_MAX_BODY: 400 at once (${ms} ms)"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n200000\r\n")
is "$st" 413 "chunks adding up to more than TETHER_GW_MAX_BODY: 413 at once"
read -r st ms < <(raw "GET /livez HTTP/1.1\r\nHost: x\r\n\r\nPOST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" 2)
is "$st" "200,400" "pipelined behind a good request: the good one is answered, then 400"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\n$AUTH\r\nTransfer-Encoding: chunked\r\n\r\nf\r\n$BODY\r\n0\r\n\r\n")
is "$st" 200 "a well-formed chunked request still reaches its route"
read -r st ms < <(raw "POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" 2)
is "$st" "401,200" "keep-alive after a body: both answered"
read -r st ms < <(raw "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n|WAIT|POST /api/v1/auth/jwt/claims HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n" 2)
is "$st" "200,400" "the second request of a connection is checked too"
ok "and refused at once (${ms} ms in all)" test "$ms" -lt 1000
is "$(code "$TREE_URL/livez")" 200 "the gateway stays healthy"
is "$(code "$TREE_URL/healthz")" 200 "and its actors too"

# --- the Host header is never echoed into X-S2-Endpoint unless it was allowed
EXT="chat-$S"
curl -s -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
  --data-binary "{\"type\":\"chat\",\"externalId\":\"$EXT\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions"
endpoint() { # endpoint [curl args]: the X-S2-Endpoint of PUT .../out
  curl -s -D - -o /dev/null -X PUT -H "$AUTH" "$@" "$TREE_URL/realtime/v1/sessions/$EXT/out" |
    grep -i '^x-s2-endpoint:' | cut -d' ' -f2- | tr -d '\r'
}
is "$(endpoint -H 'Host: evil.example')" "http://127.0.0.1:$TREE_PORT/s2/v1" \
  "a forged Host is not echoed: the endpoint is the listen address"
ok "the gateway warned that TETHER_GW_PUBLIC_URL is unset" grep -q '"event":"gw.public_url_unset"' "$TREE_LOG"
tree_stop

tree_start TETHER_GW_ALLOWED_HOSTS="gw.example, api.example:443"
KEY=$(ctl env create --org "edge2-$S" --project p --type dev)
AUTH="Authorization: Bearer $KEY"
curl -s -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
  --data-binary "{\"type\":\"chat\",\"externalId\":\"$EXT\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions"
is "$(endpoint -H "Host: GW.example:$TREE_PORT")" "http://GW.example:$TREE_PORT/s2/v1" "an allowed Host (any port) is echoed"
is "$(endpoint -H 'Host: api.example:443')" "http://api.example:443/s2/v1" "an allowed host:port is echoed"
is "$(code -X PUT -H "$AUTH" -H 'Host: api.example:80' "$TREE_URL/realtime/v1/sessions/$EXT/out")" 421 \
  "the allowed host on another port is 421"
is "$(code -X PUT -H "$AUTH" -H 'Host: evil.example' "$TREE_URL/realtime/v1/sessions/$EXT/out")" 421 \
  "a Host not allowed is 421 Misdirected Request"
is "$(code -H 'Host: evil.example' "$TREE_URL/api/v1/auth/whoami")" 421 "before authentication"
is "$(code -H 'Host: evil.example' "$TREE_URL/livez")" 200 "/livez answers any Host (probes come by address)"
tree_stop
done_testing
