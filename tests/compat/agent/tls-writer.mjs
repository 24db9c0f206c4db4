// tls-writer.mjs - the SDK's streaming .out writer over TLS (tests/integration/tls_test.sh):
// the gateway hands out an https X-S2-Endpoint, so S2's client speaks HTTP/2 chosen by ALPN.
// Prints {endpoint, stored, inOrder}. Environment: TETHER_URL (https), TETHER_SECRET_KEY,
// NODE_EXTRA_CA_CERTS (the test's self-signed certificate).
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

configure({ baseURL: process.env.TETHER_URL, accessToken: process.env.TETHER_SECRET_KEY });
const client = apiClientManager.clientOrThrow();
const n = 100;
const s = await sessions.start({
  type: "chat",
  externalId: `tls-${process.pid}`,
  taskIdentifier: "none",
  triggerConfig: { basePayload: {} },
});
const init = await client.initializeSessionStream(s.id, "out");
async function* gen() {
  for (let i = 0; i < n; i++) yield { i };
}
await sessions.open(s.id).out.pipe(gen()).waitUntilComplete();
const { records } = await client.readSessionStreamRecords(s.id, "out");
console.log(
  JSON.stringify({
    endpoint: init.headers["x-s2-endpoint"],
    stored: records.length,
    inOrder: records.every((r, i) => r.data.i === i),
  }),
);
