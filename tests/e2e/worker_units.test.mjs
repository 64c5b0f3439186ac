// Unit tests (node's test runner) for the parts of the example Worker that run without
// workerd: the metadata header's encoding and signature, and the command dispatcher's
// validation.  Run by tests/e2e/test_worker_units.py.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";

import { dispatch, handleCommandRequest } from "../../examples/basic/worker/commands.js";
import {
  MAX_METADATA_BYTES,
  asciiJson,
  buildMetadata,
  encodeMetadata,
  signMetadata,
  withMetadata,
} from "../../examples/basic/worker/metadata.js";

function request(url, headers = {}, cf = undefined) {
  const r = new Request(url, { headers });
  if (cf !== undefined) Object.defineProperty(r, "cf", { value: cf });
  return r;
}

test("asciiJson escapes everything outside printable ASCII and round-trips", () => {
  const value = { a: "Île-de-France", b: "😀", c: "\u007f", d: "plain" };
  const text = asciiJson(value);
  assert.match(text, /^[\x20-\x7e]*$/);
  assert.deepEqual(JSON.parse(text), value);
});

test("buildMetadata takes the edge's facts from request.cf and headers", () => {
  const m = buildMetadata(
    request("https://example.com/a/b?x=1", { "cf-ray": "ray-1", "cf-connecting-ip": "203.0.113.1", "x-forwarded-for": "1.1.1.1, 2.2.2.2" }, { colo: "AMS", country: "NL", region: "North Holland" }),
    { CONTAINERFLARE_WORKER: "w" },
  );
  assert.equal(m.request_id, "ray-1");
  assert.deepEqual([m.colo, m.country, m.region, m.client_ip], ["AMS", "NL", "North Holland", "203.0.113.1"]);
  assert.deepEqual([m.host, m.scheme, m.method, m.path, m.raw_url], ["example.com", "https", "GET", "/a/b?x=1", "https://example.com/a/b?x=1"]);
  assert.deepEqual(m.platform, { platform: "cloudflare", worker_name: "w" });
  assert.deepEqual(m.forwarded_for, ["1.1.1.1", "2.2.2.2"]);
  assert.equal(m.trace_context, null);
});

test("the country falls back to cf-ipcountry; the request id to a UUID", () => {
  const m = buildMetadata(request("http://x/", { "cf-ipcountry": "DE" }), {});
  assert.equal(m.country, "DE");
  assert.match(m.request_id, /^[0-9a-f-]{36}$/);
  assert.equal(m.worker_name, null);
});

test("signMetadata is HMAC-SHA256 over '<t>.<value>' in lowercase hex", async () => {
  const value = asciiJson({ colo: "AMS" });
  const signature = await signMetadata(value, "secret", 1700000000.9);
  const expected = createHmac("sha256", "secret").update(`1700000000.${value}`).digest("hex");
  assert.equal(signature, `t=1700000000,v1=${expected}`);
});

test("withMetadata replaces client-sent metadata headers and signs only with a secret", async () => {
  const incoming = request("http://x/", { "x-containerflare-metadata": "{}", "x-containerflare-signature": "t=1,v1=00" });
  const plain = await withMetadata(incoming, {});
  assert.notEqual(plain.headers.get("x-containerflare-metadata"), "{}");
  assert.equal(plain.headers.get("x-containerflare-signature"), null);
  const signed = await withMetadata(incoming, { CONTAINERFLARE_METADATA_SECRET: "k" });
  assert.match(signed.headers.get("x-containerflare-signature"), /^t=\d+,v1=[0-9a-f]{64}$/);
});

test("encodeMetadata drops client extras, then shortens the path, never the edge facts", () => {
  const base = buildMetadata(
    request("https://example.com/?" + "q".repeat(20000), { "user-agent": "u".repeat(3000), accept: "a".repeat(3000), "cf-connecting-ip": "203.0.113.1" }, { colo: "AMS" }),
    {},
  );
  const value = encodeMetadata(base);
  assert.ok(value.length <= MAX_METADATA_BYTES, value.length);
  const m = JSON.parse(value);
  assert.equal(m.client_ip, "203.0.113.1");
  assert.equal(m.colo, "AMS");
  assert.equal(m.user_agent, null);
  assert.equal(m.accept, null);
  assert.equal(m.raw_url, null);
  assert.ok(base.path.startsWith(m.path) && m.path.length > 1000);
  // Small headers are left alone.
  const small = buildMetadata(request("http://x/"), {});
  assert.equal(encodeMetadata(small), asciiJson(small));
});

async function post(body, env = {}, init = {}) {
  const response = await handleCommandRequest(new Request("http://containerflare.command/", { method: "POST", body, ...init }), env);
  return [response.status, await response.json()];
}

test("the HTTP transport: statuses of the contract", async () => {
  assert.deepEqual((await post("nope"))[0], 400);
  assert.deepEqual((await post("[1]"))[1].payload, { code: "protocol_error" });
  assert.deepEqual((await post('{"id": 1, "command": "ping", "payload": 2}'))[1], { id: 1, ok: true, payload: 2, diagnostic: null });
  const [status, reply] = await post('{"id": 9, ' + '"command": "ping", "payload": "' + "x".repeat(64) + '"}', {});
  assert.equal(status, 200);
  assert.equal(reply.id, 9);
  const big = await handleCommandRequest(
    new Request("http://h/", { method: "POST", body: '{"id": 12, "command": "ping", "payload": "' + "x".repeat(200) + '"}' }),
    {},
    { maxBodyBytes: 100 },
  );
  assert.equal(big.status, 413);
  assert.deepEqual(await big.json(), { id: 12, ok: false, payload: { code: "too_large" }, diagnostic: "request is longer than 100 bytes" });
  const get = await handleCommandRequest(new Request("http://h/"), {});
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
});

test("an unset allowlist allows nothing", async () => {
  const kv = { getWithMetadata() {}, put() {}, list() {}, delete() {} };
  const reply = await dispatch({ command: "kv.get", payload: { binding: "KV", key: "k" } }, { KV: kv });
  assert.deepEqual(reply.payload, { code: "forbidden_binding" });
});

test("an unexpected binding failure is internal_error, with a log line", async () => {
  const lines = [];
  const kv = { getWithMetadata() { throw new Error("boom"); }, put() {}, list() {}, delete() {} };
  const reply = await dispatch(
    { id: 3, command: "kv.get", payload: { binding: "KV", key: "k" } },
    { KV: kv, CONTAINERFLARE_ALLOWED_BINDINGS: "KV" },
    (line) => lines.push(line),
  );
  assert.deepEqual([reply.id, reply.ok, reply.payload], [3, false, { code: "internal_error" }]);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /boom/);
});

test("r2.delete: a null key or keys counts as absent", async () => {
  const deleted = [];
  const bucket = { head() {}, get() {}, put() {}, list() {}, createMultipartUpload() {}, async delete(k) { deleted.push(k); } };
  const env = { BUCKET: bucket, CONTAINERFLARE_ALLOWED_BINDINGS: "BUCKET" };
  const one = await dispatch({ command: "r2.delete", payload: { binding: "BUCKET", key: "a", keys: null } }, env);
  assert.equal(one.ok, true);
  const many = await dispatch({ command: "r2.delete", payload: { binding: "BUCKET", key: null, keys: ["b", "c"] } }, env);
  assert.equal(many.ok, true);
  assert.deepEqual(deleted, ["a", ["b", "c"]]);
  const neither = await dispatch({ command: "r2.delete", payload: { binding: "BUCKET", key: null } }, env);
  assert.deepEqual(neither.payload, { code: "bad_request" });
});
