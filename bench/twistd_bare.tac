"""
(bt): the bare Klein app's C{Site}, no request log, under C{twistd -n -y}:
what twistd's process costs by itself, apart from containerflare's code
(compare with (b), the same site under plain C{python}, and with (c0)).
"""

import os

from twisted.application import internet, service
from twisted.web.server import Site

from bench.app_klein import make_app

site = Site(make_app(read_metadata=False).resource())
site.log = lambda request: None  # no access log, as in (b) and (c0)
application = service.Application("bench-bare")
internet.TCPServer(int(os.environ["PORT"]), site, interface="127.0.0.1").setServiceParent(application)
