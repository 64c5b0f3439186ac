"""
Apps with start-up and shutdown hooks, for tests/test_lifecycle_process.py.

Files named by environment variables (read here, in the app module, as any
app may) let a test hold a hook and see what ran:
  LIFECYCLE_GATE       the start-up hook waits until this file exists
  LIFECYCLE_JOURNAL    every hook and request appends a line here
"""

import os
from pathlib import Path

from klein import Klein
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from containerflare import ContainerContext, Lifecycle

GATE = Path(os.environ.get("LIFECYCLE_GATE", "gate"))
JOURNAL = Path(os.environ.get("LIFECYCLE_JOURNAL", "journal"))


def note(line):
    with JOURNAL.open("a") as f:
        f.write(line + "\n")


async def wait_for(path):
    # Bounded: a test that forgets the file fails instead of hanging forever.
    for _ in range(600):
        if path.exists():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise TimeoutError(f"{path} never appeared")


app = Klein()
lifecycle = Lifecycle()
state = {}


@lifecycle.on_startup
def first():
    note("startup first")


@lifecycle.on_startup
async def open_pool():
    note("startup waiting")
    await wait_for(GATE)
    state["pool"] = "open"
    note("startup done")


@lifecycle.on_shutdown
def close_pool():
    note(f"shutdown close_pool pool={state.get('pool')}")


@lifecycle.on_shutdown(timeout=0.5)
def slow_shutdown():
    # Never fires: the timeout must cut it, and close_pool still runs.
    note("shutdown slow")
    return Deferred()


@app.route("/")
def index(request):
    ctx = ContainerContext.from_request(request)
    return f"pool={state.get('pool')} readiness={ctx.readiness.state}"


@app.route("/slow")
async def slow(request):
    note("request started")
    await wait_for(Path(request.args[b"wait"][0].decode()))
    note("request finished")
    return b"slow done"


# --- an app whose start-up fails -------------------------------------------

broken = Klein()
broken.lifecycle = Lifecycle()


@broken.lifecycle.on_startup
def explode():
    raise RuntimeError("database unreachable")


@broken.lifecycle.on_shutdown
def after_failure():
    note("shutdown after failure")


@broken.route("/")
def broken_index(request):
    return "must never be served"


# --- an app whose start-up hook times out -----------------------------------

class Hanging:
    app = Klein()
    lifecycle = Lifecycle(startup_timeout=0.5)

    @lifecycle.on_startup
    def never():
        return Deferred()


hanging = Hanging()
