"""A stand-in for the tracking service's load balancer: it forwards every request to the
container as it came, byte for byte, including its Host header.

The one change: a request whose Host is this proxy's own loopback address (a client
that was given this proxy's URL) gets the service's host name instead, as if the client
had dialled `https://mlflow.example.com`. Any other Host (a forged one) passes unchanged,
so the container's Host check sees what the real load balancer would pass it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection"}


def _handler(upstream: tuple[str, int], own_host: str, service_host: str) -> type:
    class Forward(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.send_error(411, "chunked uploads are not forwarded by this stand-in")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            host = self.headers.get("Host", "")
            headers["Host"] = service_host if host == own_host else host
            connection = http.client.HTTPConnection(*upstream, timeout=120)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    return Forward


@contextmanager
def load_balancer(*, upstream_port: int, service_host: str) -> Iterator[str]:
    """Run the stand-in on a free loopback port; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    own = f"127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = _handler(("127.0.0.1", upstream_port), own, service_host)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{own}"
    finally:
        server.shutdown()
        server.server_close()
