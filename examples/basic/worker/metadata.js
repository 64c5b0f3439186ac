// The `x-containerflare-metadata` header: what the Worker knows about a request
// (request.cf and the edge's headers), handed to the container, which cannot see
// request.cf itself.  The keys are those of containerflare's RequestMetadata.to_dict()
// (docs/metadata.md); the container reads them back with RequestMetadata.from_dict().
//
// With CONTAINERFLARE_METADATA_SECRET set, the header is signed:
//   x-containerflare-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<header>")>
// and the container ignores a header whose signature is missing, wrong or stale.

export const METADATA_HEADER = "x-containerflare-metadata";
export const SIGNATURE_HEADER = "x-containerflare-signature";

// containerflare ignores a metadata header over 8 KiB (MAX_HEADER_BYTES): stay well
// under it, so that a client sending huge headers cannot push the edge's facts
// (client_ip, colo, country...) out of the header.
export const MAX_METADATA_BYTES = 7 * 1024;

// Dropped first to last (set to null, or []) while the header is too long: what the
// client chose itself and the container can also read from the request's own headers.
const DROPPABLE = [
  "client_hints",
  "accept_language",
  "accept",
  "accept_encoding",
  "forwarded",
  "forwarded_for",
  "sec_gpc",
  "forwarded_proto",
  "user_agent",
  "raw_url",
];

const encoder = new TextEncoder();

function header(request, name) {
  const value = request.headers.get(name);
  return value === null || value === "" ? null : value;
}

function text(value) {
  return typeof value === "string" && value !== "" ? value : null;
}

/**
 * JSON with every character above U+007E escaped as \uXXXX: header values must be
 * ASCII for the signature (computed over the UTF-8 bytes) to match what the container
 * receives.
 */
export function asciiJson(value) {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

function forwardedFor(request) {
  const raw = header(request, "x-forwarded-for");
  if (raw === null) return [];
  return raw
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
}

function clientHints(request) {
  const hints = {
    ua: header(request, "sec-ch-ua"),
    ua_mobile: header(request, "sec-ch-ua-mobile"),
    ua_platform: header(request, "sec-ch-ua-platform"),
    ua_arch: header(request, "sec-ch-ua-arch"),
    ua_platform_version: header(request, "sec-ch-ua-platform-version"),
    ua_model: header(request, "sec-ch-ua-model"),
    ua_bitness: header(request, "sec-ch-ua-bitness"),
    ua_wow64: header(request, "sec-ch-ua-wow64"),
    ua_full_version_list: header(request, "sec-ch-ua-full-version-list"),
  };
  return Object.values(hints).some((v) => v !== null) ? hints : null;
}

/**
 * The metadata of one request, as a plain object in the header's JSON shape.
 *
 * @param {Request} request - the request the Worker received.
 * @param {object} env - the Worker's vars (`CONTAINERFLARE_WORKER`).
 * @returns {object}
 */
export function buildMetadata(request, env) {
  const url = new URL(request.url);
  const cf = request.cf ?? {};
  const workerName = text(env?.CONTAINERFLARE_WORKER);
  // Every key of RequestMetadata.to_dict(), in its order; what the Worker cannot know
  // (the Cloud Run fields, the trace) is null.
  return {
    request_id: header(request, "cf-ray")?.slice(0, 128) ?? crypto.randomUUID(),
    colo: text(cf.colo),
    region: text(cf.region),
    country: text(cf.country) ?? header(request, "cf-ipcountry"),
    // Cloudflare sets cf-connecting-ip at the edge (a client cannot choose it); the
    // Worker's own outbound fetch drops it, so it travels in the metadata.
    client_ip: header(request, "cf-connecting-ip"),
    host: url.host,
    scheme: url.protocol.replace(/:$/, ""),
    platform: { platform: "cloudflare", worker_name: workerName },
    worker_name: workerName,
    project_id: null,
    cloud_run_service: null,
    cloud_run_revision: null,
    cloud_run_configuration: null,
    cloud_run_region: null,
    trace_context: null,
    forwarded_for: forwardedFor(request),
    forwarded_proto: header(request, "x-forwarded-proto"),
    forwarded: header(request, "forwarded"),
    user_agent: header(request, "user-agent"),
    accept: header(request, "accept"),
    accept_language: header(request, "accept-language"),
    accept_encoding: header(request, "accept-encoding"),
    sec_gpc: header(request, "sec-gpc"),
    client_hints: clientHints(request),
    method: request.method,
    path: url.pathname + url.search,
    raw_url: request.url,
  };
}

/**
 * The header value for a metadata object: ASCII JSON of at most MAX_METADATA_BYTES,
 * dropping the client-supplied extras (then shortening the path) when it is longer.
 */
export function encodeMetadata(metadata, limit = MAX_METADATA_BYTES) {
  let value = asciiJson(metadata);
  if (value.length <= limit) return value;
  const trimmed = { ...metadata };
  for (const key of DROPPABLE) {
    trimmed[key] = key === "forwarded_for" ? [] : null;
    value = asciiJson(trimmed);
    if (value.length <= limit) return value;
  }
  // Only a very long path is left: keep its beginning.
  const path = String(metadata.path);
  const excess = value.length - limit;
  trimmed.path = path.slice(0, Math.max(1, path.length - excess - 16));
  value = asciiJson(trimmed);
  while (value.length > limit && trimmed.path.length > 1) {
    trimmed.path = trimmed.path.slice(0, Math.ceil(trimmed.path.length / 2));
    value = asciiJson(trimmed);
  }
  return value;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The `x-containerflare-signature` value for a header value.
 *
 * @param {string} value - the metadata header value exactly as sent (ASCII).
 * @param {string} secret - CONTAINERFLARE_METADATA_SECRET.
 * @param {number} [now] - seconds since the epoch (default: now).
 * @returns {Promise<string>} `t=<seconds>,v1=<64 hex digits>`
 */
export async function signMetadata(value, secret, now = Date.now() / 1000) {
  const timestamp = Math.floor(now);
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${timestamp}.${value}`));
  return `t=${timestamp},v1=${hex(mac)}`;
}

/**
 * A copy of `request` carrying the metadata header (signed when the Worker has a
 * secret).  Headers of the same names sent by the client are dropped first: only the
 * Worker speaks for the edge.
 *
 * @param {Request} request
 * @param {object} env
 * @returns {Promise<Request>}
 */
export async function withMetadata(request, env) {
  const value = encodeMetadata(buildMetadata(request, env));
  const headers = new Headers(request.headers);
  headers.delete(METADATA_HEADER);
  headers.delete(SIGNATURE_HEADER);
  headers.set(METADATA_HEADER, value);
  const secret = text(env?.CONTAINERFLARE_METADATA_SECRET);
  if (secret !== null) {
    headers.set(SIGNATURE_HEADER, await signMetadata(value, secret));
  }
  return new Request(request, { headers });
}
