"""
The bare servers: C{python -m bench.serve twisted|klein|klein-str --port N}.

Like the containerflare run with C{--no-access-log}, they write no access
log: a bare C{Site} would otherwise format a line per request into the
legacy log buffer, a cost the comparison with (d) measures separately.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("kind", choices=["twisted", "klein", "klein-str"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--freeze", action="store_true",
                        help="freeze the start-up heap (gc.freeze) once listening, as "
                        "twistd containerflare does when ready")
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.web.server import Site

    if args.kind == "twisted":
        from bench.app_twisted import resource
    else:
        from bench.app_klein import make_app

        resource = make_app(read_metadata=False, as_str=args.kind == "klein-str").resource()
    site = Site(resource)
    site.log = lambda request: None  # no access log, as in (c)
    reactor.listenTCP(args.port, site, interface=args.host)
    if args.freeze:
        import gc

        gc.freeze()
    reactor.run()


if __name__ == "__main__":
    main()
