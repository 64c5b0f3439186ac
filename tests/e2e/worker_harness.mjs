#!/usr/bin/env node
// Runs the example Worker (examples/basic/worker) in workerd through Miniflare, offline,
// for the end-to-end tests (tests/e2e/test_worker*.py).
//
//   node tests/e2e/worker_harness.mjs --target-port 8787 [--port 0] [--var NAME=VALUE ...]
//
// - bundles tests/e2e/harness_entry.js (which wraps the example Worker) with esbuild;
// - starts Miniflare with `cf: false` (nothing is fetched from the internet), the
//   example's bindings simulated locally (KV "KV", D1 "DB", R2 "BUCKET", Queue "QUEUE"
//   with a consumer, plus "OTHER_KV", which exists but is not in the allowlist), the
//   Durable Object class AppContainer (SQLite-backed), and the vars of wrangler.jsonc
//   overridable with --var;
// - the container stand-in forwards every container port to 127.0.0.1:<target-port>;
// - prints one JSON line `{"url": "http://127.0.0.1:PORT"}` on stdout when ready, then
//   serves until SIGTERM/SIGINT or until stdin closes.
//
// Packages come from examples/basic/node_modules (installed by `npm ci` there).

import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const example = join(root, "examples", "basic");
const require = createRequire(join(example, "package.json"));

function parseArgs(argv) {
  const options = { port: 0, targetPort: null, vars: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--port") options.port = Number(next());
    else if (arg === "--target-port") options.targetPort = Number(next());
    else if (arg === "--var") {
      const pair = next();
      const eq = pair.indexOf("=");
      if (eq < 1) throw new Error(`--var expects NAME=VALUE, got ${pair}`);
      options.vars[pair.slice(0, eq)] = pair.slice(eq + 1);
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(options.targetPort) || options.targetPort < 1) {
    throw new Error("--target-port PORT is required");
  }
  return options;
}

// The example's own configuration: its vars and compatibility settings are what the
// harness runs with, so the test exercises the deployed configuration.
function readWranglerConfig() {
  const fs = require("node:fs");
  const text = fs.readFileSync(join(example, "wrangler.jsonc"), "utf8");
  // JSONC: drop // and /* */ comments outside strings, then trailing commas.
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2) + 1;
    } else out += c;
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, "$1"));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const esbuild = require("esbuild");
  const { Miniflare, Log, LogLevel } = require("miniflare");
  const config = readWranglerConfig();

  const built = await esbuild.build({
    entryPoints: [join(here, "harness_entry.js")],
    bundle: true,
    format: "esm",
    platform: "neutral",
    external: ["cloudflare:workers"],
    write: false,
    logLevel: "error",
  });
  const script = built.outputFiles[0].text;

  const queueName = config.queues.producers[0].queue;
  const mf = new Miniflare({
    cf: false,
    host: "127.0.0.1",
    port: options.port,
    log: new Log(LogLevel.WARN),
    modulesRoot: here,
    modules: [{ type: "ESModule", path: join(here, "harness_bundle.mjs"), contents: script }],
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags ?? [],
    durableObjects: {
      APP_CONTAINER: { className: "AppContainer", useSQLite: true },
    },
    kvNamespaces: ["KV", "OTHER_KV", "HARNESS"],
    d1Databases: ["DB"],
    r2Buckets: ["BUCKET"],
    queueProducers: { QUEUE: queueName },
    queueConsumers: { [queueName]: { maxBatchSize: 1, maxBatchTimeout: 0 } },
    bindings: {
      ...config.vars,
      ...options.vars,
      HARNESS_TARGET_PORT: String(options.targetPort),
    },
  });
  const url = await mf.ready;
  process.stdout.write(JSON.stringify({ url: url.origin }) + "\n");

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await mf.dispose();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}

main().catch((error) => {
  process.stderr.write(`worker harness failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
