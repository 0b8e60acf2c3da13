"""An OTLP/HTTP traces receiver on 127.0.0.1, and a collector that never answers.

Shared by the telemetry, demo and distribution tests (``tests/`` is on the import
path through its conftest).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def attributes(item: Any) -> dict[str, Any]:
    """An OTLP span's (or resource's) attributes as a plain dict."""
    result: dict[str, Any] = {}
    for attribute in item.attributes:
        value = attribute.value
        result[attribute.key] = getattr(value, value.WhichOneof("value"))
    return result


class OtlpReceiver:
    """Decodes the protobuf ``ExportTraceServiceRequest`` posted to any path; answers 200."""

    def __init__(self, port: int = 0) -> None:
        #: (resource attributes, span) for every span received.
        self.spans: list[tuple[dict[str, Any], Any]] = []
        self.paths: list[str] = []
        self.condition = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.condition:
                    receiver.paths.append(self.path)
                    for resource_spans in request.resource_spans:
                        resource = attributes(resource_spans.resource)
                        for scope_spans in resource_spans.scope_spans:
                            for item in scope_spans.spans:
                                receiver.spans.append((resource, item))
                    receiver.condition.notify_all()
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.condition:
            return self.condition.wait_for(predicate, timeout)

    def received(self) -> list[tuple[dict[str, Any], Any]]:
        with self.condition:
            return list(self.spans)

    def names(self) -> list[str]:
        """The names of the spans received, in arrival order."""
        with self.condition:
            return [item.name for _, item in self.spans]

    def traces(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """The spans received, by trace id (hex)."""
        with self.condition:
            by_trace: dict[str, list[tuple[dict[str, Any], Any]]] = {}
            for resource, item in self.spans:
                by_trace.setdefault(item.trace_id.hex(), []).append((resource, item))
            return by_trace


class SilentCollector:
    """Accepts TCP connections and never answers (a hung collector)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self._held.append(connection)  # read nothing, answer nothing

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        for connection in self._held:
            connection.close()
        self.socket.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0
