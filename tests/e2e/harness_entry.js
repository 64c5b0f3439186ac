// Test entry for the example Worker (examples/basic/worker/index.js), bundled by
// worker_harness.mjs and run in workerd through Miniflare.
//
// Everything the example exports is re-exported unchanged (its fetch and queue
// handlers, ContainerProxy, the command dispatcher behind outboundByHost) except the
// Durable Object class, which is subclassed only to give the Container base class a
// stand-in for `ctx.container` (no Docker here): the stand-in forwards the container's
// ports to a real `twistd -n containerflare` process on 127.0.0.1 and records what the
// Container class asks of it.
//
// Test-only routes, served before the example's fetch handler:
//   /__harness/outbound/<instance>/<host>/<path>  the container's outbound HTTP to <host>:
//       handed to the fetcher that the Container class registered with
//       ctx.container.interceptOutboundHttp(<host>, ...) in that instance, i.e. the real
//       ContainerProxy -> outboundByHost -> dispatcher path.  ("_" = the singleton.)
//   /__harness/state/<instance>   what the stand-in saw (starts, envVars, forwarded requests)
//   /__harness/queue              messages the queue consumer received

import example, * as exampleModule from "../../examples/basic/worker/index.js";

export * from "../../examples/basic/worker/index.js";

const ExampleContainer = exampleModule.AppContainer;

function makeStandIn(targetPort) {
  const state = { starts: [], signals: [], intercepts: {}, forwarded: [] };
  let running = false;
  let settle = null;
  let monitor = null;
  const fetchers = new Map();

  async function forward(port, url, init) {
    const original = new URL(url);
    const target = `http://127.0.0.1:${targetPort}${original.pathname}${original.search}`;
    const request = new Request(target, init);
    const record = {
      port,
      host: original.host,
      method: request.method,
      path: original.pathname + original.search,
      metadata: request.headers.get("x-containerflare-metadata"),
      signature: request.headers.get("x-containerflare-signature"),
    };
    state.forwarded.push(record);
    const response = await fetch(request);
    record.status = response.status;
    record.server = response.headers.get("server");
    return response;
  }

  const standIn = {
    get running() {
      return running;
    },
    start(config) {
      state.starts.push(config ?? {});
      running = true;
      monitor = new Promise((resolve, reject) => {
        settle = { resolve, reject };
      });
    },
    monitor() {
      return monitor ?? Promise.resolve();
    },
    async destroy() {
      running = false;
      settle?.reject(new Error("destroyed"));
    },
    signal(number) {
      state.signals.push(number);
      running = false;
      settle?.resolve();
    },
    setInactivityTimeout() {},
    async interceptOutboundHttp(host, fetcher) {
      fetchers.set(host, fetcher);
      state.intercepts[host] = (state.intercepts[host] ?? 0) + 1;
    },
    async interceptOutboundHttps(host, fetcher) {
      fetchers.set(`https:${host}`, fetcher);
    },
    async interceptAllOutboundHttp(fetcher) {
      fetchers.set("*", fetcher);
      state.intercepts["*"] = (state.intercepts["*"] ?? 0) + 1;
    },
    getTcpPort(port) {
      return { fetch: (url, init) => forward(port, url, init) };
    },
  };
  return { standIn, state, fetchers };
}

function json(body, status = 200) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

class HarnessContainer extends ExampleContainer {
  constructor(ctx, env) {
    const harness = makeStandIn(Number(env.HARNESS_TARGET_PORT));
    // Before super(): the Container constructor reads ctx.container.
    Object.defineProperty(ctx, "container", { value: harness.standIn });
    super(ctx, env);
    this.harness = harness;
  }

  async fetch(request) {
    const op = request.headers.get("x-harness-op");
    if (op === null) {
      const response = await super.fetch(request);
      const tagged = new Response(response.body, response);
      tagged.headers.set("x-harness-instance", this.ctx.id.toString());
      return tagged;
    }
    if (op === "state") {
      return json({ id: this.ctx.id.toString(), ...this.harness.state });
    }
    if (op === "outbound") {
      const host = request.headers.get("x-harness-host");
      // Only a host the Container class asked to intercept is served here: anything
      // else would have gone to the internet (or been refused) in production.
      const fetcher = this.harness.fetchers.get(host) ?? this.harness.fetchers.get("*");
      if (fetcher === undefined) {
        return json({ error: `no outbound interception registered for ${host}` }, 502);
      }
      const url = new URL(request.url);
      const headers = new Headers(request.headers);
      headers.delete("x-harness-op");
      headers.delete("x-harness-host");
      return fetcher.fetch(new Request(`http://${host}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: request.body,
      }));
    }
    return json({ error: `unknown harness op ${op}` }, 400);
  }
}

// The Container base class keys its outbound registries by the class's name, and the
// example registered its outboundByHost under its own class name: keep that name so the
// example's registration (and nothing the harness adds) is what serves the command host.
Object.defineProperty(HarnessContainer, "name", { value: ExampleContainer.name });

export { HarnessContainer as AppContainer };

function instanceStub(env, name) {
  const id = env.APP_CONTAINER.idFromName(name === "_" ? "cf-singleton-container" : name);
  return env.APP_CONTAINER.get(id);
}

async function harnessRoute(request, env, url) {
  const parts = url.pathname.split("/");
  // ["", "__harness", op, ...]
  const op = parts[2];
  if (op === "outbound" && parts.length >= 5) {
    const [instance, host] = [parts[3], parts[4]];
    const rest = "/" + parts.slice(5).join("/");
    const headers = new Headers(request.headers);
    headers.set("x-harness-op", "outbound");
    headers.set("x-harness-host", host);
    return instanceStub(env, instance).fetch(
      new Request(`http://harness${rest}${url.search}`, {
        method: request.method,
        headers,
        body: request.body,
      }),
    );
  }
  if (op === "state" && parts.length === 4) {
    return instanceStub(env, parts[3]).fetch(
      new Request("http://harness/", { headers: { "x-harness-op": "state" } }),
    );
  }
  if (op === "queue") {
    const listed = await env.HARNESS.list({ prefix: "queue:" });
    const messages = [];
    for (const key of listed.keys) messages.push(JSON.parse(await env.HARNESS.get(key.name)));
    messages.sort((a, b) => a.seq - b.seq);
    return json(messages);
  }
  return json({ error: `unknown harness route ${url.pathname}` }, 404);
}

let queueSeq = 0;

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/__harness/")) return harnessRoute(request, env, url);
    return example.fetch(request, env, ctx);
  },

  async queue(batch, env, ctx) {
    // Record what the consumer received, then let the example's consumer handle it.
    for (const message of batch.messages) {
      queueSeq += 1;
      await env.HARNESS.put(
        `queue:${message.id}`,
        JSON.stringify({ seq: queueSeq, queue: batch.queue, id: message.id, body: message.body }),
      );
    }
    return example.queue(batch, env, ctx);
  },
};
