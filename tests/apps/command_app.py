"""
A Klein app for tests/test_command_runtime.py: C{/invoke?command=C&payload=JSON}
runs one command through the process's command client and answers what
came back (or the error's class and message).  It also prints and logs, to
show that neither reaches a stdio channel.
"""

import json

from klein import Klein
from twisted.logger import Logger

from containerflare import ContainerContext
from containerflare.command import CommandError

app = Klein()
log = Logger()


@app.route("/invoke")
async def invoke(request):
    ctx = ContainerContext.from_request(request)
    command = request.args[b"command"][0].decode()
    payload = json.loads(request.args.get(b"payload", [b"null"])[0])
    print(f"print() from the handler before {command}")
    log.info("invoking {command}", command=command)
    request.setHeader(b"content-type", b"application/json")
    try:
        result = await ctx.invoke(command, payload, timeout=20)
    except CommandError as e:
        return json.dumps({"error": type(e).__name__, "message": str(e)}).encode()
    return json.dumps({"result": result}).encode()
