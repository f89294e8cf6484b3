"""A stand-in for AWS Secrets Manager's API, enough for the tracking task's login keeper.

AWS itself cannot run here. The container's boto3 is pointed at this server through
`AWS_ENDPOINT_URL_SECRETS_MANAGER` (what the ECS agent would leave at the AWS default);
it speaks the service's JSON protocol for `PutSecretValue` and `GetSecretValue`, on the
secrets the Pulumi program declared and no other.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SecretsManager:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.puts: list[str] = []
        self._lock = threading.Lock()

    def handle(self, target: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
        arn = body.get("SecretId", "")
        with self._lock:
            if arn not in self.values:
                return 400, {"__type": "ResourceNotFoundException", "message": "no such secret"}
            if target.endswith(".PutSecretValue"):
                self.values[arn] = body["SecretString"]
                self.puts.append(arn)
                return 200, {"ARN": arn, "VersionId": str(len(self.puts))}
            if target.endswith(".GetSecretValue"):
                return 200, {"ARN": arn, "SecretString": self.values[arn]}
        return 400, {"__type": "InvalidRequestException", "message": target}


@contextmanager
def secrets_manager(store: SecretsManager, *, host: str) -> Iterator[str]:
    """Serve `store` on `host` (the Docker bridge's gateway); yield the endpoint URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = store.handle(self.headers.get("X-Amz-Target", ""),
                                          json.loads(self.rfile.read(length) or b"{}"))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
