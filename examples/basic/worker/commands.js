// The host side of containerflare's command channel, running in the Worker.
//
// The container POSTs one command request (JSON) to http://containerflare.command/;
// the Container class's `outboundByHost` hands that request to `handleCommandRequest`,
// which runs the command against the Worker's own bindings (KV, D1, R2, Queues) and
// answers one response object.  The contract (payloads, replies, error codes) is
// docs/commands.md at the root of the containerflare repository: the reference host
// (`python -m containerflare.command.host`) implements the same one, and the end-to-end
// tests compare the two.

export const PROTOCOL_VERSION = 1;
export const HOST_NAME = "cloudflare-worker";

// Bodies above this are refused with 413 before they are parsed (the reference host's
// default line limit).
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

const MAX_ID = Number.MAX_SAFE_INTEGER; // 2^53 - 1
const BINDING_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const ENVELOPE_KEYS = new Set(["id", "command", "payload"]);
const encoder = new TextEncoder();

/** A command that did not run: becomes `{"ok": false, "payload": {"code": ...}}`. */
export class CommandError extends Error {
  constructor(code, diagnostic) {
    super(diagnostic);
    this.code = code;
  }
}

const badRequest = (diagnostic) => new CommandError("bad_request", diagnostic);

function utf8Length(text) {
  return encoder.encode(text).length;
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}

// ---------------------------------------------------------------------------
// Payload validation (docs/commands.md §2): every rule is checked before a
// binding is touched, so both hosts refuse the same payloads the same way.
// ---------------------------------------------------------------------------

class Fields {
  constructor(command, payload, allowed) {
    if (!isObject(payload)) {
      throw badRequest(`${command}: payload must be an object, got ${describe(payload)}`);
    }
    for (const key of Object.keys(payload)) {
      if (!allowed.includes(key)) {
        throw badRequest(`${command}: unknown field '${key}'`);
      }
    }
    this.command = command;
    this.payload = payload;
  }

  has(name) {
    return Object.prototype.hasOwnProperty.call(this.payload, name);
  }

  value(name) {
    return this.has(name) ? this.payload[name] : undefined;
  }

  fail(name, expected) {
    return badRequest(`${this.command}: field '${name}' must be ${expected}`);
  }

  string(name) {
    const value = this.value(name);
    if (typeof value !== "string") throw this.fail(name, "a string");
    return value;
  }

  optionalString(name) {
    const value = this.value(name);
    if (value === undefined || value === null) return null;
    if (typeof value !== "string") throw this.fail(name, "a string or null");
    return value;
  }

  optionalInteger(name, min, max, fallback = null) {
    const value = this.value(name);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw this.fail(name, `an integer from ${min} to ${max}`);
    }
    return value;
  }

  binding() {
    const name = this.value("binding");
    if (typeof name !== "string" || !BINDING_NAME.test(name)) {
      throw this.fail("binding", "a binding name matching ^[A-Za-z_][A-Za-z0-9_]*$");
    }
    return name;
  }
}

function kvKey(fields, name = "key") {
  const key = fields.string(name);
  if (key === "" || key === "." || key === ".." || utf8Length(key) > 512) {
    throw fields.fail(name, "a non-empty key of at most 512 UTF-8 bytes, not '.' or '..'");
  }
  return key;
}

function r2Key(fields, value, name = "key") {
  if (typeof value !== "string" || value === "" || utf8Length(value) > 1024) {
    throw fields.fail(name, "a non-empty key of at most 1024 UTF-8 bytes");
  }
  return value;
}

function d1Params(fields, value, name) {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw fields.fail(name, "a list");
  return value.map((param, index) => {
    if (param === null || typeof param === "number" || typeof param === "string") return param;
    if (typeof param === "boolean") return param ? 1 : 0;
    throw fields.fail(`${name}[${index}]`, "null, a boolean, a number or a string");
  });
}

function delaySeconds(fields, value, name) {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 43200) {
    throw fields.fail(name, "an integer from 0 to 43200");
  }
  return value;
}

function queueBody(fields, value, name) {
  if (utf8Length(JSON.stringify(value)) > 128 * 1024) {
    throw fields.fail(name, "a JSON value of at most 128 KiB");
  }
  return value;
}

// ---------------------------------------------------------------------------
// Bindings: the allowlist first (a forbidden name is refused whether or not it
// exists), then the binding itself, recognised by the methods of its kind.
// ---------------------------------------------------------------------------

const KINDS = {
  kv: { label: "a KV namespace", methods: ["getWithMetadata", "put", "list", "delete"] },
  d1: { label: "a D1 database", methods: ["prepare", "batch", "exec"] },
  r2: { label: "an R2 bucket", methods: ["head", "get", "put", "list", "createMultipartUpload"] },
  queue: { label: "a Queue producer", methods: ["send", "sendBatch"] },
};

/**
 * The binding names the container may use: `CONTAINERFLARE_ALLOWED_BINDINGS`, names
 * separated by commas or spaces.  Unset or empty allows nothing.
 */
export function allowedBindings(env) {
  const raw = env?.CONTAINERFLARE_ALLOWED_BINDINGS;
  if (typeof raw !== "string") return new Set();
  return new Set(raw.split(/[\s,]+/).filter(Boolean));
}

function binding(env, name, kind) {
  if (!allowedBindings(env).has(name)) {
    throw new CommandError(
      "forbidden_binding",
      `binding '${name}' is not in CONTAINERFLARE_ALLOWED_BINDINGS`,
    );
  }
  const target = env[name];
  const spec = KINDS[kind];
  const isKind =
    target !== null &&
    (typeof target === "object" || typeof target === "function") &&
    spec.methods.every((method) => typeof target[method] === "function");
  if (!isKind) {
    throw new CommandError(
      "unknown_binding",
      target === undefined
        ? `the Worker has no binding named '${name}'`
        : `binding '${name}' is not ${spec.label}`,
    );
  }
  return target;
}

function message(error) {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------
// Base64 (R2 bodies) without node:buffer.
// ---------------------------------------------------------------------------

function toBase64(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

function fromBase64(fields, text, name) {
  if (typeof text !== "string" || !BASE64.test(text)) {
    throw fields.fail(name, "standard base64 with padding");
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// ---------------------------------------------------------------------------
// Replies in the contract's shapes.
// ---------------------------------------------------------------------------

function d1Value(value) {
  // BLOBs travel as lists of byte values, as D1 itself returns them.
  if (value instanceof ArrayBuffer) return Array.from(new Uint8Array(value));
  if (ArrayBuffer.isView(value)) {
    return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  return value;
}

function statementResult(result) {
  const rows = (result.results ?? []).map((row) => {
    const out = {};
    for (const [column, value] of Object.entries(row)) out[column] = d1Value(value);
    return out;
  });
  const meta = result.meta ?? {};
  return {
    results: rows,
    meta: { changes: meta.changes ?? 0, last_row_id: meta.last_row_id ?? 0 },
  };
}

function r2Description(object) {
  return {
    key: object.key,
    size: object.size,
    etag: object.etag,
    uploaded: object.uploaded.toISOString(),
    content_type: object.httpMetadata?.contentType ?? null,
    custom_metadata: { ...(object.customMetadata ?? {}) },
  };
}

// ---------------------------------------------------------------------------
// The commands.
// ---------------------------------------------------------------------------

const COMMANDS = {
  async ping(payload) {
    return payload === undefined ? null : payload;
  },

  async "host.info"(payload) {
    if (payload !== undefined && payload !== null) new Fields("host.info", payload, []);
    return { host: HOST_NAME, protocol: PROTOCOL_VERSION, commands: COMMAND_NAMES };
  },

  async "kv.get"(payload, env) {
    const f = new Fields("kv.get", payload, ["binding", "key"]);
    const name = f.binding();
    const key = kvKey(f);
    const kv = binding(env, name, "kv");
    const { value, metadata } = await kv.getWithMetadata(key, "text");
    if (value === null) return { value: null, metadata: null };
    return { value, metadata: metadata ?? null };
  },

  async "kv.put"(payload, env) {
    const f = new Fields("kv.put", payload, ["binding", "key", "value", "expiration_ttl", "metadata"]);
    const name = f.binding();
    const key = kvKey(f);
    const value = f.string("value");
    const ttl = f.optionalInteger("expiration_ttl", 60, Number.MAX_SAFE_INTEGER);
    const metadata = f.value("metadata") ?? null;
    if (metadata !== null && utf8Length(JSON.stringify(metadata)) > 1024) {
      throw f.fail("metadata", "a JSON value of at most 1024 bytes");
    }
    const kv = binding(env, name, "kv");
    const options = {};
    if (ttl !== null) options.expirationTtl = ttl;
    if (metadata !== null) options.metadata = metadata;
    await kv.put(key, value, options);
    return null;
  },

  async "kv.delete"(payload, env) {
    const f = new Fields("kv.delete", payload, ["binding", "key"]);
    const name = f.binding();
    const key = kvKey(f);
    await binding(env, name, "kv").delete(key);
    return null;
  },

  async "kv.list"(payload, env) {
    const f = new Fields("kv.list", payload, ["binding", "prefix", "limit", "cursor"]);
    const name = f.binding();
    const prefix = f.optionalString("prefix");
    const limit = f.optionalInteger("limit", 1, 1000, 1000);
    const cursor = f.optionalString("cursor");
    const kv = binding(env, name, "kv");
    const options = { limit };
    if (prefix !== null) options.prefix = prefix;
    if (cursor !== null) options.cursor = cursor;
    const page = await kv.list(options);
    return {
      keys: page.keys.map((k) => ({
        name: k.name,
        expiration: k.expiration ?? null,
        metadata: k.metadata ?? null,
      })),
      list_complete: page.list_complete,
      cursor: page.list_complete ? null : page.cursor ?? null,
    };
  },

  async "d1.query"(payload, env) {
    const f = new Fields("d1.query", payload, ["binding", "sql", "params"]);
    const name = f.binding();
    const sql = f.string("sql");
    const params = d1Params(f, f.value("params"), "params");
    const db = binding(env, name, "d1");
    try {
      return statementResult(await db.prepare(sql).bind(...params).all());
    } catch (error) {
      throw new CommandError("d1_error", message(error));
    }
  },

  async "d1.batch"(payload, env) {
    const f = new Fields("d1.batch", payload, ["binding", "statements"]);
    const name = f.binding();
    const statements = f.value("statements");
    if (!Array.isArray(statements) || statements.length < 1 || statements.length > 100) {
      throw f.fail("statements", "a list of 1 to 100 statements");
    }
    const parsed = statements.map((statement, index) => {
      const s = new Fields(`d1.batch statements[${index}]`, statement, ["sql", "params"]);
      return { sql: s.string("sql"), params: d1Params(s, s.value("params"), "params") };
    });
    const db = binding(env, name, "d1");
    try {
      const results = await db.batch(parsed.map((s) => db.prepare(s.sql).bind(...s.params)));
      return results.map(statementResult);
    } catch (error) {
      throw new CommandError("d1_error", message(error));
    }
  },

  async "r2.put"(payload, env) {
    const f = new Fields("r2.put", payload, [
      "binding", "key", "body_base64", "content_type", "custom_metadata",
    ]);
    const name = f.binding();
    const key = r2Key(f, f.value("key"));
    const body = fromBase64(f, f.value("body_base64"), "body_base64");
    const contentType = f.optionalString("content_type");
    const custom = f.value("custom_metadata") ?? null;
    if (
      custom !== null &&
      (!isObject(custom) || !Object.values(custom).every((v) => typeof v === "string"))
    ) {
      throw f.fail("custom_metadata", "an object of strings");
    }
    const bucket = binding(env, name, "r2");
    const options = {};
    if (contentType !== null) options.httpMetadata = { contentType };
    if (custom !== null) options.customMetadata = custom;
    return r2Description(await bucket.put(key, body, options));
  },

  async "r2.get"(payload, env) {
    const f = new Fields("r2.get", payload, ["binding", "key"]);
    const name = f.binding();
    const key = r2Key(f, f.value("key"));
    const object = await binding(env, name, "r2").get(key);
    if (object === null) return null;
    const bytes = new Uint8Array(await object.arrayBuffer());
    return { ...r2Description(object), body_base64: toBase64(bytes) };
  },

  async "r2.delete"(payload, env) {
    const f = new Fields("r2.delete", payload, ["binding", "key", "keys"]);
    const name = f.binding();
    // As every optional field, null means absent.
    const key = f.value("key") ?? null;
    const keys = f.value("keys") ?? null;
    let target;
    if ((key === null) === (keys === null)) {
      throw badRequest("r2.delete: give exactly one of 'key' and 'keys'");
    } else if (key !== null) {
      target = r2Key(f, key);
    } else {
      if (!Array.isArray(keys) || keys.length < 1 || keys.length > 1000) {
        throw f.fail("keys", "a list of 1 to 1000 keys");
      }
      target = keys.map((k, i) => r2Key(f, k, `keys[${i}]`));
    }
    await binding(env, name, "r2").delete(target);
    return null;
  },

  async "r2.list"(payload, env) {
    const f = new Fields("r2.list", payload, ["binding", "prefix", "limit", "cursor"]);
    const name = f.binding();
    const prefix = f.optionalString("prefix");
    const limit = f.optionalInteger("limit", 1, 1000, 1000);
    const cursor = f.optionalString("cursor");
    const bucket = binding(env, name, "r2");
    const options = { limit, include: ["httpMetadata", "customMetadata"] };
    if (prefix !== null) options.prefix = prefix;
    if (cursor !== null) options.cursor = cursor;
    const page = await bucket.list(options);
    return {
      objects: page.objects.map(r2Description),
      truncated: page.truncated,
      cursor: page.truncated ? page.cursor ?? null : null,
    };
  },

  async "queue.send"(payload, env) {
    const f = new Fields("queue.send", payload, ["binding", "body", "delay_seconds"]);
    const name = f.binding();
    if (!f.has("body")) throw f.fail("body", "present (null sends JSON null)");
    const body = queueBody(f, f.value("body"), "body");
    const delay = delaySeconds(f, f.value("delay_seconds"), "delay_seconds");
    const queue = binding(env, name, "queue");
    const options = { contentType: "json" };
    if (delay !== null) options.delaySeconds = delay;
    try {
      await queue.send(body, options);
    } catch (error) {
      throw new CommandError("queue_error", message(error));
    }
    return null;
  },

  async "queue.send_batch"(payload, env) {
    const f = new Fields("queue.send_batch", payload, ["binding", "messages", "delay_seconds"]);
    const name = f.binding();
    const messages = f.value("messages");
    if (!Array.isArray(messages) || messages.length < 1 || messages.length > 100) {
      throw f.fail("messages", "a list of 1 to 100 messages");
    }
    const batchDelay = delaySeconds(f, f.value("delay_seconds"), "delay_seconds");
    const parsed = messages.map((m, index) => {
      const s = new Fields(`queue.send_batch messages[${index}]`, m, ["body", "delay_seconds"]);
      if (!s.has("body")) throw s.fail("body", "present (null sends JSON null)");
      const own = delaySeconds(s, s.value("delay_seconds"), "delay_seconds");
      const out = { body: queueBody(s, s.value("body"), "body"), contentType: "json" };
      const delay = own ?? batchDelay;
      if (delay !== null) out.delaySeconds = delay;
      return out;
    });
    const queue = binding(env, name, "queue");
    try {
      await queue.sendBatch(parsed);
    } catch (error) {
      throw new CommandError("queue_error", message(error));
    }
    return null;
  },
};

export const COMMAND_NAMES = Object.keys(COMMANDS).sort();

// ---------------------------------------------------------------------------
// Envelopes.
// ---------------------------------------------------------------------------

function reply(id, ok, payload, diagnostic) {
  const out = {};
  if (id !== undefined) out.id = id;
  out.ok = ok;
  out.payload = payload;
  out.diagnostic = diagnostic;
  return out;
}

function failure(id, code, diagnostic) {
  return reply(id, false, { code }, diagnostic);
}

function hasLoneSurrogate(value) {
  if (typeof value === "string") return !value.isWellFormed();
  if (Array.isArray(value)) return value.some(hasLoneSurrogate);
  if (isObject(value)) {
    return Object.entries(value).some(([k, v]) => !k.isWellFormed() || hasLoneSurrogate(v));
  }
  return false;
}

/**
 * Run one already-parsed request object against the Worker's bindings.
 *
 * @param {object} request - `{"id"?: int, "command": str, "payload"?: any}`.
 * @param {object} env - the Worker's bindings and vars.
 * @param {function} [log] - called with one line for unexpected failures.
 * @returns {Promise<object>} the response object; never rejects.
 */
export async function dispatch(request, env, log = console.error) {
  let id;
  if (Object.prototype.hasOwnProperty.call(request, "id")) {
    const candidate = request.id;
    if (typeof candidate !== "number" || !Number.isInteger(candidate) || candidate < 0 || candidate > MAX_ID) {
      return failure(undefined, "protocol_error", "'id' must be an integer from 0 to 2^53-1");
    }
    id = candidate;
  }
  if (typeof request.command !== "string") {
    return failure(id, "protocol_error", "'command' must be a string");
  }
  // The order of checks is the contract's: request, command name, payload, allowlist,
  // binding.
  const command = Object.prototype.hasOwnProperty.call(COMMANDS, request.command)
    ? COMMANDS[request.command]
    : undefined;
  if (command === undefined) {
    return failure(id, "unknown_command", `unknown command '${request.command.slice(0, 100)}'`);
  }
  for (const key of Object.keys(request)) {
    if (!ENVELOPE_KEYS.has(key)) {
      return failure(id, "bad_request", `unknown request key '${key}'`);
    }
  }
  try {
    const payload = Object.prototype.hasOwnProperty.call(request, "payload") ? request.payload : null;
    return reply(id, true, await command(payload, env), null);
  } catch (error) {
    if (error instanceof CommandError) return failure(id, error.code, error.message);
    log(`containerflare command ${request.command} failed: ${error?.stack ?? error}`);
    return failure(id, "internal_error", `${request.command}: ${message(error)}`);
  }
}

function jsonResponse(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

// Reads at most `limit` bytes; null when the body is longer (the first bytes are kept
// in `head` to find a leading {"id": N for the too_large reply).
async function readBody(request, limit) {
  if (request.body === null) return { bytes: new Uint8Array(0), head: null };
  const reader = request.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      return { bytes: null, head: concat(chunks, total).subarray(0, 128) };
    }
  }
  return { bytes: concat(chunks, total), head: null };
}

function concat(chunks, total) {
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

const LEADING_ID = /^[ \t\r]*\{[ \t\r]*"id"[ \t\r]*:[ \t\r]*(\d{1,16})[ \t\r]*[,}]/;

function leadingId(head) {
  const match = LEADING_ID.exec(String.fromCharCode(...head));
  if (match === null) return undefined;
  const id = Number(match[1]);
  return id <= MAX_ID ? id : undefined;
}

/**
 * The HTTP transport of the command channel: one request object in the POST body, one
 * response object back.  200 for every response the dispatcher produced (`ok: false`
 * included); 400, 405 and 413 only for transport problems.
 *
 * @param {Request} request - the container's request to the command host.
 * @param {object} env - the Worker's bindings and vars.
 * @param {object} [options] - `{maxBodyBytes, log}`.
 */
export async function handleCommandRequest(request, env, options = {}) {
  const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const log = options.log ?? console.error;
  if (request.method !== "POST") {
    return jsonResponse(
      failure(undefined, "protocol_error", `method ${request.method} not allowed: POST a command`),
      405,
      { allow: "POST" },
    );
  }
  const { bytes, head } = await readBody(request, limit);
  if (bytes === null) {
    return jsonResponse(failure(leadingId(head), "too_large", `request is longer than ${limit} bytes`), 413);
  }
  let parsed;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    return jsonResponse(
      failure(undefined, "protocol_error", `request is not UTF-8 JSON: ${message(error)}`),
      400,
    );
  }
  if (hasLoneSurrogate(parsed)) {
    return jsonResponse(
      failure(undefined, "protocol_error", "request contains a lone surrogate escape"),
      400,
    );
  }
  const reply = isObject(parsed)
    ? await dispatch(parsed, env, log)
    : failure(undefined, "protocol_error", "request must be a JSON object");
  // As the reference host: a request the dispatcher could not read is a 400.
  return jsonResponse(reply, !reply.ok && reply.payload.code === "protocol_error" ? 400 : 200);
}
