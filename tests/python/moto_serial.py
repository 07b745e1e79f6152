"""moto's DynamoDB stand-in, serving one request at a time.

`moto_server` answers every request on its own thread, but moto's DynamoDB
backend is not thread-safe: a transaction snapshots whole tables with
`deepcopy` and restores the snapshot when it is cancelled, so concurrent
writes fail with HTTP 500 ("dictionary changed size during iteration") or,
worse, a cancelled transaction silently undoes another request's write.
Real DynamoDB applies each item write atomically and isolates transactions.
Serialising the requests gives the store contract's concurrency cases a
faithful stand-in (a stricter one: everything is serial), while keeping
moto's own request handling, HTTP keep-alive included.

Usage: python tests/python/moto_serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class Serialised:
    """A WSGI app that lets one request at a time into the wrapped app."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The response body is produced inside the lock: moto may do its
            # work lazily while the body is iterated.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        Serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
