# records_test.sh - records are bytes: a body or header with a NUL byte or invalid UTF-8 (from a
# plain append, an S2 JSON append in base64 or an S2 protobuf append) is rendered losslessly by
# /records, the realtime SSE, the S2 JSON read and the S2 SSE, every one answering 200 with the
# records around it intact. A plain append's envelope and /records escape a byte that is not
# UTF-8 as \udcXX (PEP 383 surrogateescape: python3 decodes it with errors='surrogateescape');
# SSE batches and the S2 read are S2's raw format (such a byte is U+FFFD, NUL \u0000), or base64
# with S2-Format: base64, exact.
. "$(dirname "$0")/../lib/itest.sh"

tree_start
S=$$-$RANDOM
KEY=$(ctl env create --org "rec-$S" --project a --type dev)
T=$TETHER_TEST_TMP/rec.$S
ST="$TREE_URL/s2/v1/streams/sessions%2Fbytes-$S%2Fout/records"

code() { # code FILE CURL-ARGS...: the status; the body in FILE
  local f=$1
  shift
  curl -s -o "$f" -w '%{http_code}' -H "Authorization: Bearer $KEY" "$@"
}
rt_append() { # rt_append PART FILE
  code "$T.ack" -H "X-Part-Id: $1" --data-binary "@$2" "$TREE_URL/realtime/v1/sessions/bytes-$S/out/append"
}

curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"type\":\"chat\",\"externalId\":\"bytes-$S\",\"taskIdentifier\":\"echo\",\"triggerConfig\":{\"basePayload\":{}}}" \
  "$TREE_URL/api/v1/sessions"
H=$(curl -s -D - -o /dev/null -X PUT -H "Authorization: Bearer $KEY" "$TREE_URL/realtime/v1/sessions/bytes-$S/out")
S2T=$(grep -i '^x-s2-access-token:' <<<"$H" | cut -d' ' -f2- | tr -d '\r')
ok "an S2 token for the channel" test -n "$S2T"

# seq 0-2: plain appends (the gateway wraps them in the {"data","id"} envelope)
printf 'before' >"$T.0"
printf 'a\0b' >"$T.1"
printf '\xff\xfe' >"$T.2"
is "$(rt_append p0 "$T.0")/$(rt_append nul "$T.1")/$(rt_append ff "$T.2")" 200/200/200 "plain appends of text, a\\0b and \\xff\\xfe"
# seq 3: S2 protobuf, headers and body with NUL and invalid UTF-8
python3 - >"$T.pb" <<'PY'
import sys
def v(n):
    o = b""
    while True:
        c, n = n & 0x7f, n >> 7
        o += bytes([c | (0x80 if n else 0)])
        if not n:
            return o
def f(num, b): return bytes([num << 3 | 2]) + v(len(b)) + b
hdr = lambda n, val: f(2, f(1, n) + f(2, val))
sys.stdout.buffer.write(f(1, hdr(b"h", b"a\0b") + hdr(b"\xff\xfeh", b"\xff\xfe") + f(3, b"x\0y\xff")))
PY
is "$(code "$T.ack" -H "Authorization: Bearer $S2T" -H 'Content-Type: application/protobuf' --data-binary "@$T.pb" "$ST")" 200 \
  "an S2 protobuf append of NUL and invalid UTF-8 in header and body"
# seq 4: S2 JSON in base64: a header value with NUL, one with invalid UTF-8, a body of invalid UTF-8
B64='{"records":[{"headers":[["aA==","AA=="],["Zw==","wyg="]],"body":"//4A"}]}'
is "$(code "$T.ack" -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' -H 'S2-Format: base64' -d "$B64" "$ST")" 200 \
  "an S2 JSON append with S2-Format: base64"
is "$(code "$T.ack" -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' -H 'S2-Format: base64' -d '{"records":[{"body":"a*b"}]}' "$ST")/$(jq -r .code "$T.ack")" \
  422/invalid "a base64 append whose body is not base64 is 422"
is "$(code "$T.ack" -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' -H 'S2-Format: hex' -d '{"records":[{"body":"ab"}]}' "$ST")" 422 \
  "an unknown S2-Format is 422"
# seq 5-6: ordinary records after the bad ones
is "$(code "$T.ack" -H "Authorization: Bearer $S2T" -H 'Content-Type: application/json' -d '{"records":[{"body":"{\"data\":{\"t\":\"ok\"},\"id\":\"r5\"}"}]}' "$ST")" 200 \
  "an S2 envelope record"
printf 'after' >"$T.6"
is "$(rt_append p6 "$T.6")" 200 "a plain append after them"

# The realtime view of a record, one line each: seq|data bytes|id|header bytes. /records unwraps
# the envelope; for SSE the client does (the SDK's rule: body JSON with data, else the raw body).
VIEW='
import base64, json, sys
def b(s): return s.encode("utf-8", "surrogateescape")
def line(seq, data, rid, hs):
    d = b(data) if isinstance(data, str) else json.dumps(data, separators=(",", ":")).encode()
    print("%d|%r|%s|%r" % (seq, d, rid, [(b(n), b(v)) for n, v in hs]))
mode = sys.argv[1]
if mode == "records":
    for r in json.load(sys.stdin)["records"]:
        line(r["seqNum"], r["data"], r["id"], r.get("headers", []))
else:
    for l in sys.stdin:
        if not l.startswith("data: {\"records\""):
            continue
        for r in json.loads(l[6:])["records"]:
            hs = r.get("headers", [])
            if mode == "s2b64":
                print("%d|%r|%r" % (r["seq_num"], base64.b64decode(r.get("body", "")),
                      [(base64.b64decode(n), base64.b64decode(v)) for n, v in hs]))
                continue
            body, env = r.get("body", ""), None
            try:
                env = json.loads(body)
            except ValueError:
                pass
            if isinstance(env, dict) and "data" in env:
                line(r["seq_num"], env["data"], env.get("id", ""), hs)
            else:
                line(r["seq_num"], body, "", hs)
'
WANT="0|b'before'|p0|[]
1|b'a\\x00b'|nul|[]
2|b'\\xff\\xfe'|ff|[]
3|b'x\\x00y\\xff'||[(b'h', b'a\\x00b'), (b'\\xff\\xfeh', b'\\xff\\xfe')]
4|b'\\xff\\xfe\\x00'||[(b'h', b'\\x00'), (b'g', b'\\xc3(')]
5|b'{\"t\":\"ok\"}'|r5|[]
6|b'after'|p6|[]"

is "$(code "$T.out" -G "$TREE_URL/realtime/v1/sessions/bytes-$S/out/records")" 200 "/records answers 200 over the bad records"
is "$(python3 -c "$VIEW" records <"$T.out" 2>&1)" "$WANT" "/records renders every record's bytes exactly, the neighbours intact"
is "$(code "$T.out" -G "$TREE_URL/realtime/v1/sessions/bytes-$S/out/records?afterEventId=2")" 200 "/records from inside the bad window"
is "$(python3 -c "$VIEW" records <"$T.out" | cut -d'|' -f1 | paste -sd,)" 3,4,5,6 "and resumes in order"
ok "/records is valid UTF-8 (escapes, never raw invalid bytes)" python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$T.out"

is "$(code "$T.out" --max-time 8 -N -H 'Timeout-Seconds: 1' "$TREE_URL/realtime/v1/sessions/bytes-$S/out")" 200 "the realtime SSE answers 200"
# S2's raw format: a plain append's envelope is ASCII (escapes), so exact; bytes written through
# S2 that are not UTF-8 are U+FFFD, as S2 renders them
FFFD='\xef\xbf\xbd'
WANT_SSE="$(sed -n 1,3p <<<"$WANT")
3|b'x\\x00y$FFFD'||[(b'h', b'a\\x00b'), (b'$FFFD${FFFD}h', b'$FFFD$FFFD')]
4|b'$FFFD$FFFD\\x00'||[(b'h', b'\\x00'), (b'g', b'$FFFD(')]
$(sed -n 6,7p <<<"$WANT")"
is "$(python3 -c "$VIEW" sse <"$T.out" 2>&1)" "$WANT_SSE" "its batches: every record, plain appends exact, S2-written bytes as S2's raw format"
is "$(code "$T.out" --max-time 8 -N -H 'Timeout-Seconds: 1' -H 'S2-Format: base64' "$TREE_URL/realtime/v1/sessions/bytes-$S/out")" 200 "the realtime SSE with S2-Format: base64"
is "$(python3 -c "$VIEW" s2b64 <"$T.out" | sed -n '4,5p' 2>&1)" \
  "3|b'x\\x00y\\xff'|[(b'h', b'a\\x00b'), (b'\\xff\\xfeh', b'\\xff\\xfe')]
4|b'\\xff\\xfe\\x00'|[(b'h', b'\\x00'), (b'g', b'\\xc3(')]" "carries those exactly too"

# The S2 endpoint: raw (the default) is S2's lossy UTF-8 with NUL escaped; base64 is exact.
is "$(code "$T.out" -H 'Authorization: Bearer '"$S2T" "$ST?seq_num=0&count=100")" 200 "the S2 JSON read answers 200"
is "$(jq -c '[.records[] | .body // ""] | .[1], .[3], .[4], .[6]' "$T.out" | paste -sd' ')" \
  '"{\"data\":\"a\\u0000b\",\"id\":\"nul\"}" "x\u0000y�" "��\u0000" "{\"data\":\"after\",\"id\":\"p6\"}"' \
  "raw: NUL as \\u0000, invalid UTF-8 as U+FFFD (S2's raw format), neighbours intact"
is "$(code "$T.out" -H 'Authorization: Bearer '"$S2T" -H 'S2-Format: base64' "$ST?seq_num=3&count=2")" 200 "the S2 JSON read in base64"
is "$(python3 -c 'import base64, json, sys
for r in json.load(sys.stdin)["records"]:
    print("%d|%r|%r" % (r["seq_num"], base64.b64decode(r.get("body", "")),
          [(base64.b64decode(n), base64.b64decode(v)) for n, v in r.get("headers", [])]))' <"$T.out" 2>&1)" \
  "3|b'x\\x00y\\xff'|[(b'h', b'a\\x00b'), (b'\\xff\\xfeh', b'\\xff\\xfe')]
4|b'\\xff\\xfe\\x00'|[(b'h', b'\\x00'), (b'g', b'\\xc3(')]" "base64: header names, values and bodies exact"
is "$(code "$T.out" --max-time 8 -N -H 'Authorization: Bearer '"$S2T" -H 'Accept: text/event-stream' -H 'S2-Format: base64' "$ST?seq_num=1&wait=0")" 200 \
  "the S2 SSE read in base64"
is "$(python3 -c "$VIEW" s2b64 <"$T.out" | sed -n '1p;3p;4p' 2>&1)" \
  "1|b'{\"data\":\"a\\\\u0000b\",\"id\":\"nul\"}'|[]
3|b'x\\x00y\\xff'|[(b'h', b'a\\x00b'), (b'\\xff\\xfeh', b'\\xff\\xfe')]
4|b'\\xff\\xfe\\x00'|[(b'h', b'\\x00'), (b'g', b'\\xc3(')]" "its batches carry the exact bytes"
is "$(code "$T.out" -H 'Authorization: Bearer '"$S2T" -H 'S2-Format: hex' "$ST")" 422 "a read with an unknown S2-Format is 422"

rm -f "$T".*
done_testing
