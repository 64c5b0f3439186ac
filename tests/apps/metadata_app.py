"""
A Klein app for the metadata process tests: echoes the request's metadata
as JSON.
"""

import json

from klein import Klein

from containerflare import ContainerContext

app = Klein()


@app.route("/", branch=True)
def echo(request):
    metadata = ContainerContext.from_request(request).metadata
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(metadata.to_dict()).encode()
