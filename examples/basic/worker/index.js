// The Worker in front of the containerflare example app.
//
// - Every request goes to a container running app.py (`twistd -n containerflare`), with
//   the `x-containerflare-metadata` header built from request.cf and the edge headers,
//   signed when CONTAINERFLARE_METADATA_SECRET is set (metadata.js).
// - One singleton container by default; CONTAINERFLARE_INSTANCES spreads requests over
//   N containers, by the header named in CONTAINERFLARE_ROUTING_KEY or at random
//   (routing.js).
// - The container reaches KV, D1, R2 and Queues by POSTing commands to
//   http://containerflare.command/ (its CF_CMD_ENDPOINT); `outboundByHost` hands those
//   requests to the dispatcher (commands.js), which refuses any binding not listed in
//   CONTAINERFLARE_ALLOWED_BINDINGS.

import { Container, ContainerProxy } from "@cloudflare/containers";

import { handleCommandRequest } from "./commands.js";
import { COMMAND_HOST, containerEnv } from "./config.js";
import { withMetadata } from "./metadata.js";
import { containerFor } from "./routing.js";

// outboundByHost runs in a ContainerProxy entrypoint, which the Container class reaches
// through ctx.exports: the Worker must export it.  (Every export of this module is an
// entrypoint for workerd: export only classes and handlers from here.)
export { ContainerProxy };

export class AppContainer extends Container {
  defaultPort = 8787;
  // After this long without a request the container gets SIGTERM; containerflare drains
  // in-flight requests and exits 0.
  sleepAfter = "10m";

  constructor(ctx, env) {
    super(ctx, env);
    this.envVars = containerEnv(env);
  }
}

// Assigned, not declared as `static outboundByHost = ...`: a static class field is
// defined on the subclass itself and bypasses the Container setter that registers the
// handlers for ContainerProxy, so the command host would silently fall through to the
// internet.
AppContainer.outboundByHost = {
  [COMMAND_HOST]: (request, env) => handleCommandRequest(request, env),
};

export default {
  async fetch(request, env) {
    const container = containerFor(env.APP_CONTAINER, request, env);
    return container.fetch(await withMetadata(request, env));
  },

  // The consumer of the sample queue: the app sends with `queue.send` through the
  // command channel; here each message is logged and acknowledged.
  async queue(batch) {
    for (const message of batch.messages) {
      console.log(`queue ${batch.queue}: message ${message.id}: ${JSON.stringify(message.body)}`);
      message.ack();
    }
  },
};
