// auth.test.mjs - public access tokens minted by the real SDK (auth.createPublicToken, which
// first calls POST /api/v1/auth/jwt/claims with the secret key) are accepted by Tether, and
// forged, foreign, expired, unsigned and HS512 tokens are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SignJWT, UnsecuredJWT } from "jose";
import { auth, configure } from "@trigger.dev/sdk";

const baseURL = process.env.TETHER_URL;
const keyA = process.env.TETHER_SECRET_KEY;
const keyB = process.env.TETHER_SECRET_KEY_B;

async function whoami(token) {
  const res = await fetch(`${baseURL}/api/v1/auth/whoami`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: await res.json() };
}

test("the SDK's createPublicToken is accepted, with its scopes", async () => {
  configure({ baseURL, accessToken: keyA });
  const token = await auth.createPublicToken({ scopes: { read: { sessions: "chat-1" } } });
  const me = await whoami(token);
  assert.equal(me.status, 200);
  assert.equal(me.body.credential, "public_token");
  assert.deepEqual(me.body.scopes, ["read:sessions:chat-1"]);
  const secret = await whoami(keyA);
  assert.equal(me.body.environment.id, secret.body.environment.id);
});

test("jwt/claims answers the environment id, as the SDK expects", async () => {
  const res = await fetch(`${baseURL}/api/v1/auth/jwt/claims`, {
    method: "POST",
    headers: { Authorization: `Bearer ${keyA}` },
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.pub, true);
  assert.match(body.sub, /^c[0-9a-z]{24}$/);
});

test("a token signed with environment A's key but naming environment B is refused", async () => {
  const envB = (await whoami(keyB)).body.environment.id;
  const forged = await new SignJWT({ sub: envB, pub: true, scopes: ["read:all"] })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer("https://id.trigger.dev")
    .setAudience("https://api.trigger.dev")
    .setIssuedAt()
    .setExpirationTime("15m")
    .sign(new TextEncoder().encode(keyA));
  assert.equal((await whoami(forged)).status, 401);
});

test("environment B's own token works on B and carries B", async () => {
  configure({ baseURL, accessToken: keyB });
  const token = await auth.createPublicToken({ scopes: { read: { sessions: true } } });
  const me = await whoami(token);
  assert.equal(me.status, 200);
  assert.equal(me.body.environment.id, (await whoami(keyB)).body.environment.id);
  assert.notEqual(me.body.environment.id, (await whoami(keyA)).body.environment.id);
});

test("an alg none token is refused with 401", async () => {
  const envA = (await whoami(keyA)).body.environment.id;
  const none = new UnsecuredJWT({ sub: envA, pub: true, scopes: ["admin"] })
    .setIssuer("https://id.trigger.dev")
    .setAudience("https://api.trigger.dev")
    .setExpirationTime("15m")
    .encode();
  assert.equal((await whoami(none)).status, 401);
});

test("an HS512 token signed with the right key is refused with 401", async () => {
  const envA = (await whoami(keyA)).body.environment.id;
  const hs512 = await new SignJWT({ sub: envA, pub: true, scopes: ["admin"] })
    .setProtectedHeader({ alg: "HS512" })
    .setIssuer("https://id.trigger.dev")
    .setAudience("https://api.trigger.dev")
    .setExpirationTime("15m")
    .sign(new TextEncoder().encode(keyA));
  assert.equal((await whoami(hs512)).status, 401);
});

test("an expired SDK token is refused with 401", async () => {
  configure({ baseURL, accessToken: keyA });
  const token = await auth.createPublicToken({
    scopes: { read: { sessions: "x" } },
    expirationTime: Math.floor(Date.now() / 1000) - 5,
  });
  const me = await whoami(token);
  assert.equal(me.status, 401);
  assert.match(me.body.error, /expired/);
});

test("a public token cannot fetch claims (secret key only)", async () => {
  configure({ baseURL, accessToken: keyA });
  const token = await auth.createPublicToken({ scopes: { read: { sessions: "x" } } });
  const res = await fetch(`${baseURL}/api/v1/auth/jwt/claims`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: "Public JWT API keys are not allowed for this request" });
});
