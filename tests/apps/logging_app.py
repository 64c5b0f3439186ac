"""
A Klein app that logs every way an app can, for the logging process tests.
"""

import logging
import warnings

from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger

log = Logger(namespace="logging_app")
stdlib = logging.getLogger("logging_app")
stdlib.warning("imported")  # before the service starts
warnings.warn("import-time warning", UserWarning, stacklevel=1)
print("printed while importing")

app = Klein()


def _marker(request):
    return request.args[b"m"][0].decode()


@app.route("/work")
def work(request):
    m = _marker(request)
    log.info("twisted {m}", m=m)
    stdlib.info("stdlib %s", m)
    print("print", m)
    stdlib.debug("debug %s", m)  # below the default level: not logged

    def later(_):
        log.warn("later {m}", m=m)
        try:
            1 / 0
        except ZeroDivisionError:
            stdlib.exception("exception %s", m)
        return b"ok"

    return deferLater(reactor, 0.01, lambda: None).addCallback(later)


@app.route("/async")
async def coroutine(request):
    m = _marker(request)
    await deferLater(reactor, 0.01, lambda: None)
    log.error("async {m}", m=m)
    return b"ok"


@app.route("/crash")
def crash(request):
    raise RuntimeError("crash " + _marker(request))
