"""A real OTLP/HTTP round trip to a receiver on loopback, then a collector outage."""

from __future__ import annotations

import logging

import anyio
import pytest
from opentelemetry.trace import SpanKind

from otlp_receiver import OtlpReceiver, attributes
from thunderline.telemetry import (
    configure,
    continue_from,
    force_flush,
    inject,
    shutdown,
    span,
    statistics,
)

pytestmark = pytest.mark.anyio


async def flush() -> None:
    with anyio.fail_after(60):
        assert await anyio.to_thread.run_sync(force_flush, 30.0)


async def wait_for_names(receiver: OtlpReceiver, *names: str) -> None:
    def arrived() -> bool:
        return set(names) <= set(receiver.names())

    with anyio.fail_after(60):
        assert await anyio.to_thread.run_sync(receiver.wait_for, arrived, 50.0)


async def test_otlp_http_wire_and_collector_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="thunderline.telemetry")
    receiver = OtlpReceiver()
    port = receiver.port
    configure(
        environ={
            "OTEL_SERVICE_NAME": "wire-test",
            "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=tests,deployment.environment=ci",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        },
        export_timeout=0.5,
        install_global=False,
    )
    try:
        # 1. Export over the wire: service name, names, parentage, attributes.
        async with span("order received", attributes={"order.id": "o-1", "amount": 12}):
            async with span("validate"):
                await anyio.sleep(0)
            meta = inject({})

        async def consumer() -> None:
            async with continue_from(meta), span("process orders", kind=SpanKind.CONSUMER):
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
        await flush()
        await wait_for_names(receiver, "order received", "validate", "process orders")
        assert set(receiver.paths) == {"/v1/traces"}
        got = {item.name: (resource, item) for resource, item in receiver.spans}
        resource, root = got["order received"]
        assert resource["service.name"] == "wire-test"
        assert resource["service.namespace"] == "tests"
        assert resource["deployment.environment"] == "ci"
        _, child = got["validate"]
        _, hop = got["process orders"]
        assert root.parent_span_id == b""
        assert child.parent_span_id == root.span_id
        assert hop.parent_span_id == root.span_id
        assert child.trace_id == hop.trace_id == root.trace_id
        assert root.trace_id.hex() == meta["trace_id"]
        assert attributes(root) == {"order.id": "o-1", "amount": 12}
        assert hop.kind == hop.SPAN_KIND_CONSUMER

        # 2. The collector goes away: nothing blocks, spans are dropped and counted.
        receiver.stop()
        before = statistics()
        for round_ in range(3):
            with anyio.fail_after(5):
                for index in range(100):
                    async with span(f"outage {round_}-{index}"):
                        await anyio.sleep(0)
            await flush()
        after = statistics()
        assert after.dropped_spans - before.dropped_spans == 300
        assert after.export_failures - before.export_failures >= 3
        drops = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(("thunderline", "opentelemetry"))
        ]
        assert len(drops) == 1, [r.getMessage() for r in drops]
        assert f"127.0.0.1:{port}" in drops[0].getMessage()

        # 3. The collector comes back on the same port: export resumes.
        receiver = OtlpReceiver(port)
        async with span("after restart"):
            pass
        await flush()
        await wait_for_names(receiver, "after restart")
        assert statistics().exported_spans > after.exported_spans
        assert any(r.getMessage() == "span export resumed" for r in caplog.records)
    finally:
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(shutdown)
        receiver.stop()
