// Reads a JSON list of command request objects on stdin and prints the example Worker's
// dispatcher replies (one JSON list) on stdout, with no bindings at all: every request
// that passes validation and the allowlist ends at `unknown_binding`.  Used by
// tests/e2e/test_worker_differential.py.
import { dispatch } from "../../examples/basic/worker/commands.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const requests = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const env = { CONTAINERFLARE_ALLOWED_BINDINGS: process.argv[2] ?? "" };
const replies = [];
for (const request of requests) replies.push(await dispatch(request, env, () => {}));
process.stdout.write(JSON.stringify(replies));
