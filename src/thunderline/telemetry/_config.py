"""Telemetry configuration read from the standard OpenTelemetry environment.

Example::

    >>> from thunderline.telemetry import TelemetryConfig
    >>> config = TelemetryConfig.from_env({"OTEL_SERVICE_NAME": "orders"})
    >>> config.service_name, config.traces_endpoint
    ('orders', 'http://localhost:4318/v1/traces')

Environment variables and what a bad value does:

==================================== ============================ =========================
Variable                             Default                      Bad value
==================================== ============================ =========================
``OTEL_SDK_DISABLED``                ``false``                    ``true`` disables, else on
``OTEL_SERVICE_NAME``                ``thunderline``              (any non-empty string)
``OTEL_RESOURCE_ATTRIBUTES``         ``service.namespace=local``  pair skipped, one warning
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used verbatim)            TelemetryConfigError
``OTEL_EXPORTER_OTLP_ENDPOINT``      ``http://localhost:4318``    TelemetryConfigError
``OTEL_ENDPOINT`` (alias of the above, lower precedence)          TelemetryConfigError
``OTEL_TRACES_SAMPLER``              ``parentbased_always_on``    default, one warning
``OTEL_TRACES_SAMPLER_ARG``          ``1.0`` for ratio samplers   ``1.0``, one warning
``OTEL_SAMPLING_RATIO`` (alias of ``OTEL_TRACES_SAMPLER_ARG``; alone it selects
``parentbased_traceidratio``)
``OTEL_BSP_SCHEDULE_DELAY`` (ms)     ``5000``                     default, one warning
``OTEL_BSP_MAX_QUEUE_SIZE``          ``2048``                     default, one warning
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``   ``512``                      default, one warning
==================================== ============================ =========================

The base endpoint gets ``/v1/traces`` appended; the traces-specific endpoint
is used as given (OpenTelemetry specification, "Endpoint URLs for OTLP/HTTP").
An unusable endpoint is an error because no fallback would send spans where
the operator meant. Sampler and batching typos fall back, as the
OpenTelemetry SDK does, so a typo in the environment never stops the
application. Keyword arguments to :class:`TelemetryConfig` and
:func:`thunderline.telemetry.configure` are checked strictly and raise
:class:`TelemetryConfigError`.
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from thunderline.telemetry._errors import TelemetryConfigError

_logger = logging.getLogger("thunderline.telemetry")

DEFAULT_SERVICE_NAME = "thunderline"
DEFAULT_RESOURCE_ATTRIBUTES: tuple[tuple[str, str], ...] = (("service.namespace", "local"),)
DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
DEFAULT_SAMPLER = "parentbased_always_on"
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def traces_endpoint_from_base(base: str) -> str:
    """Append the OTLP/HTTP traces path to a base endpoint.

    Args:
        base: A base URL such as ``http://collector:4318`` or ``.../prefix/``.

    Returns:
        ``base`` without trailing slashes plus ``/v1/traces``.
    """
    return base.rstrip("/") + TRACES_PATH


def check_endpoint(setting: str, value: object) -> str:
    accepted = "an http:// or https:// URL with a host, e.g. 'http://localhost:4318'"
    if not isinstance(value, str):
        raise TelemetryConfigError(setting, value, accepted)
    try:
        parsed = urllib.parse.urlsplit(value.strip())
        parsed.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise TelemetryConfigError(setting, value, accepted) from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TelemetryConfigError(setting, value, accepted)
    return value.strip()


def _validate_endpoint(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    check_endpoint(attribute.name, value)


def _validate_sampler(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in SAMPLERS:
        raise TelemetryConfigError(attribute.name, value, f"one of {', '.join(SAMPLERS)}")


def _check_ratio(setting: str, value: object) -> float:
    accepted = "a number between 0.0 and 1.0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryConfigError(setting, value, accepted)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise TelemetryConfigError(setting, value, accepted)
    return float(value)


def _validate_ratio(instance: Any, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None:
        _check_ratio(attribute.name, value)


def _validate_positive(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value <= 0
    ):
        raise TelemetryConfigError(attribute.name, value, "a positive number")


def _validate_name(instance: Any, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise TelemetryConfigError(attribute.name, value, "a non-empty string")


def _validate_resource(
    instance: Any, attribute: attrs.Attribute[tuple[tuple[str, str], ...]], value: object
) -> None:
    accepted = "a tuple of (str, str) pairs with non-empty keys"
    if not isinstance(value, tuple):
        raise TelemetryConfigError(attribute.name, value, accepted)
    for pair in value:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
            or not pair[0]
        ):
            raise TelemetryConfigError(attribute.name, value, accepted)


def _to_pairs(
    value: Mapping[str, str] | tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple(value.items())
    return value


@attrs.frozen(kw_only=True)
class TelemetryConfig:
    """How :func:`thunderline.telemetry.configure` sets up tracing.

    Attributes:
        enabled: False makes every span a no-op (propagation still works).
        service_name: The ``service.name`` resource attribute.
        resource_attributes: Further resource attributes as (key, value)
            pairs; ``service.name`` among them is overridden by
            ``service_name``.
        traces_endpoint: The full OTLP/HTTP (protobuf) URL spans are posted to.
        sampler: One of ``always_on``, ``always_off``, ``traceidratio``,
            ``parentbased_always_on``, ``parentbased_always_off``,
            ``parentbased_traceidratio``.
        sampler_ratio: The ratio in [0, 1] for the ratio samplers; None means
            1.0. Ignored by the other samplers.
        export_timeout: Seconds one export call may take, retries included
            (OTLP's own default is 10 s; short so an unreachable collector
            costs little).
        schedule_delay: Seconds between exports of a partial batch.
        max_queue_size: Ended spans waiting for export; more are dropped.
        max_export_batch_size: Spans per export call.

    Raises:
        TelemetryConfigError: If a field has an unusable value.

    .. versionadded:: 0.1
    """

    enabled: bool = True
    service_name: str = attrs.field(default=DEFAULT_SERVICE_NAME, validator=_validate_name)
    resource_attributes: tuple[tuple[str, str], ...] = attrs.field(
        default=DEFAULT_RESOURCE_ATTRIBUTES, converter=_to_pairs, validator=_validate_resource
    )
    traces_endpoint: str = attrs.field(
        default=traces_endpoint_from_base(DEFAULT_ENDPOINT), validator=_validate_endpoint
    )
    sampler: str = attrs.field(default=DEFAULT_SAMPLER, validator=_validate_sampler)
    sampler_ratio: float | None = attrs.field(default=None, validator=_validate_ratio)
    export_timeout: float = attrs.field(default=2.0, validator=_validate_positive)
    schedule_delay: float = attrs.field(default=5.0, validator=_validate_positive)
    max_queue_size: int = attrs.field(default=2048, validator=_validate_positive)
    max_export_batch_size: int = attrs.field(default=512, validator=_validate_positive)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """Read the configuration from OpenTelemetry environment variables.

        See the module documentation for the variables, defaults and what a
        bad value does.

        Args:
            environ: The environment to read; ``os.environ`` by default.

        Returns:
            The configuration.

        Raises:
            TelemetryConfigError: If an endpoint variable is not an http(s)
                URL with a host.

        .. versionadded:: 0.1
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or not value.strip():
                return None
            return value.strip()

        traces_endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if traces_endpoint is not None:
            traces_endpoint = check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_endpoint)
        else:
            base_name = next(
                (n for n in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_ENDPOINT") if get(n)), None
            )
            base = DEFAULT_ENDPOINT if base_name is None else get(base_name)
            assert base is not None
            traces_endpoint = traces_endpoint_from_base(
                check_endpoint(base_name or "default endpoint", base)
            )

        sampler, ratio = _sampler_from_env(get)
        max_queue_size = _int_from_env(get, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        batch_size = _int_from_env(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        if batch_size > max_queue_size:
            _logger.warning(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%d exceeds OTEL_BSP_MAX_QUEUE_SIZE=%d; using %d",
                batch_size,
                max_queue_size,
                max_queue_size,
            )
            batch_size = max_queue_size
        return cls(
            enabled=(get("OTEL_SDK_DISABLED") or "").lower() != "true",
            service_name=get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            resource_attributes=_resource_from_env(get("OTEL_RESOURCE_ATTRIBUTES")),
            traces_endpoint=traces_endpoint,
            sampler=sampler,
            sampler_ratio=ratio,
            schedule_delay=_int_from_env(get, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
            max_queue_size=max_queue_size,
            max_export_batch_size=batch_size,
        )

    def build_sampler(self) -> Sampler:
        """Build the OpenTelemetry sampler this configuration names.

        Returns:
            The sampler; ratio samplers use ``sampler_ratio`` (1.0 if None).

        .. versionadded:: 0.1
        """
        ratio = 1.0 if self.sampler_ratio is None else self.sampler_ratio
        match self.sampler:
            case "always_on":
                return ALWAYS_ON
            case "always_off":
                return ALWAYS_OFF
            case "traceidratio":
                return TraceIdRatioBased(ratio)
            case "parentbased_always_off":
                return ParentBased(ALWAYS_OFF)
            case "parentbased_traceidratio":
                return ParentBased(TraceIdRatioBased(ratio))
            case _:
                return ParentBased(ALWAYS_ON)


def _sampler_from_env(get: Any) -> tuple[str, float | None]:
    name: str | None = get("OTEL_TRACES_SAMPLER")
    arg_name = (
        "OTEL_TRACES_SAMPLER_ARG" if get("OTEL_TRACES_SAMPLER_ARG") else "OTEL_SAMPLING_RATIO"
    )
    arg: str | None = get(arg_name)
    if name is None:
        name = "parentbased_traceidratio" if get("OTEL_SAMPLING_RATIO") else DEFAULT_SAMPLER
    else:
        name = name.lower()
    if name not in SAMPLERS:
        _logger.warning(
            "OTEL_TRACES_SAMPLER=%r is not one of %s; using %s",
            name,
            ", ".join(SAMPLERS),
            DEFAULT_SAMPLER,
        )
        return DEFAULT_SAMPLER, None
    if name not in RATIO_SAMPLERS or arg is None:
        return name, None
    try:
        return name, _check_ratio(arg_name, float(arg))
    except (ValueError, TelemetryConfigError):
        _logger.warning(
            "%s=%r is not a number between 0.0 and 1.0; sampling ratio 1.0", arg_name, arg
        )
        return name, 1.0


def _int_from_env(get: Any, name: str, default: int) -> int:
    raw: str | None = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        _logger.warning("%s=%r is not a positive integer; using %d", name, raw, default)
        return default
    return value


def _resource_from_env(raw: str | None) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return DEFAULT_RESOURCE_ATTRIBUTES
    pairs: dict[str, str] = {}
    bad: list[str] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        if not sep or not key:
            bad.append(item)
            continue
        pairs[key] = urllib.parse.unquote(value.strip())
    if bad:
        _logger.warning(
            "OTEL_RESOURCE_ATTRIBUTES: skipped %s (expected key=value pairs separated by commas)",
            ", ".join(repr(item) for item in bad),
        )
    return tuple(pairs.items())
