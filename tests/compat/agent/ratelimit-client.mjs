// ratelimit-client.mjs - the SDK against a rate-limited Tether (tests/integration/ratelimit_test.sh):
// with the environment's bucket empty, an SDK call gets 429, waits until x-ratelimit-reset as
// zodfetch does, and succeeds. Prints {ok, waitedMs, resetInMs}. Environment: TETHER_URL,
// TETHER_SECRET_KEY.
import { configure, auth } from "@trigger.dev/sdk";

const url = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL: url, accessToken: key });
let resetInMs = 0;
// empty the bucket by hand, keeping the last answer's reset
for (;;) {
  const res = await fetch(`${url}/api/v1/auth/whoami`, { headers: { Authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  if (res.status === 429) {
    resetInMs = Number(res.headers.get("x-ratelimit-reset")) - Date.now();
    break;
  }
}
const t0 = Date.now();
// an SDK call (POST /api/v1/auth/jwt/claims, through zodfetch's retry)
const token = await auth.createPublicToken({ scopes: { read: { sessions: "x" } } });
console.log(JSON.stringify({ ok: typeof token === "string" && token.length > 0, waitedMs: Date.now() - t0, resetInMs }));
