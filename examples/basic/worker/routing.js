// Which container instance serves a request.
//
// CONTAINERFLARE_INSTANCES unset or 1: one singleton container (the package's default
// name).  N > 1: N named instances ("instance-0" .. "instance-<N-1>", the names
// getRandom() uses); a request carrying the header named by CONTAINERFLARE_ROUTING_KEY
// always lands on the same instance (hash of the value), any other request on a random
// one.

import { getContainer } from "@cloudflare/containers";

export const MAX_INSTANCES = 1000;
const encoder = new TextEncoder();
let warned = false;

/** The number of instances configured, 1 when unset or invalid (logged once). */
export function instanceCount(env) {
  const raw = env?.CONTAINERFLARE_INSTANCES;
  if (raw === undefined || raw === null || String(raw).trim() === "") return 1;
  const n = Number(String(raw).trim());
  if (!Number.isInteger(n) || n < 1 || n > MAX_INSTANCES) {
    if (!warned) {
      warned = true;
      console.warn(`CONTAINERFLARE_INSTANCES=${JSON.stringify(raw)} is not an integer from 1 to ${MAX_INSTANCES}; using 1`);
    }
    return 1;
  }
  return n;
}

/** FNV-1a (32 bits) over the UTF-8 bytes: stable across isolates and deploys. */
export function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/**
 * The name of the Durable Object (and so of the container) for a request.
 *
 * @param {Request} request
 * @param {object} env
 * @param {function} [random] - returns a number in [0, 1) (tests pass their own).
 * @returns {string|undefined} undefined for the singleton.
 */
export function instanceName(request, env, random = Math.random) {
  const count = instanceCount(env);
  if (count === 1) return undefined;
  const keyHeader = typeof env?.CONTAINERFLARE_ROUTING_KEY === "string" ? env.CONTAINERFLARE_ROUTING_KEY.trim() : "";
  const key = keyHeader === "" ? null : request.headers.get(keyHeader);
  const index = key !== null && key !== "" ? fnv1a(key) % count : Math.floor(random() * count);
  return `instance-${index}`;
}

/** The container stub that serves a request. */
export function containerFor(binding, request, env) {
  return getContainer(binding, instanceName(request, env));
}
