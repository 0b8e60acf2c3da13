"""Telemetry configuration read from the standard OpenTelemetry environment.

Example::

    >>> from thunderline.telemetry import TelemetryConfig
    >>> config = TelemetryConfig.from_env({"OTEL_SERVICE_NAME": "orders"})
    >>> config.service_name, config.traces_endpoint
    ('orders', 'http://localhost:4318/v1/traces')

Where each setting comes from, in one place (:func:`resolve_config`): an argument
(``configure(endpoint=...)``, or a command-line flag of ``thunderline demo`` /
``thunderline run`` passed as one) wins over the environment, the environment
wins over the default. Among the variables:

==================================== ============================ ==============================
Variable                             Default                      Bad value
==================================== ============================ ==============================
``OTEL_SDK_DISABLED``                ``false``                    ``true`` disables; other than
                                                                  ``false``: one warning, on
``OTEL_TRACES_EXPORTER``             ``otlp``                     name skipped, one warning
``OTEL_SERVICE_NAME``                ``thunderline``              (any non-empty string)
``OTEL_RESOURCE_ATTRIBUTES``         ``service.namespace=local``  pair skipped, one warning
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used verbatim)            TelemetryConfigError
``OTEL_EXPORTER_OTLP_ENDPOINT``      ``http://localhost:4318``    TelemetryConfigError
``OTEL_ENDPOINT`` (alias of the above, lower precedence)          TelemetryConfigError
``OTEL_TRACES_SAMPLER``              ``parentbased_always_on``    default, one warning
``OTEL_TRACES_SAMPLER_ARG``          ``1.0`` for ratio samplers   ignored, one warning
``OTEL_SAMPLING_RATIO`` (alias of ``OTEL_TRACES_SAMPLER_ARG``, lower precedence; alone it
selects ``parentbased_traceidratio``)
``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` (ms; beats the next)       ignored, one warning
``OTEL_EXPORTER_OTLP_TIMEOUT`` (ms)  ``2000`` (OTLP says 10000)   ignored, one warning
``OTEL_BSP_SCHEDULE_DELAY`` (ms)     ``5000``                     default, one warning
``OTEL_BSP_MAX_QUEUE_SIZE``          ``2048``                     default, one warning
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``   ``512``                      default, one warning
==================================== ============================ ==============================

``OTEL_TRACES_EXPORTER`` takes ``otlp`` (OTLP/HTTP protobuf), ``console``
(one JSON object per span on standard output), a comma-separated list of
both, or ``none`` (spans are still created, so trace context and log
correlation work, but nothing is exported). An empty variable counts as
unset. ``service.name`` comes from ``OTEL_SERVICE_NAME``, else from
``OTEL_RESOURCE_ATTRIBUTES``, else ``thunderline``; the attributes in
``OTEL_RESOURCE_ATTRIBUTES`` are added to ``service.namespace=local`` (and
may replace it).

The base endpoint gets ``/v1/traces`` appended; the traces-specific endpoint
is used as given (OpenTelemetry specification, "Endpoint URLs for OTLP/HTTP").
An unusable endpoint is an error because no fallback would send spans where
the operator meant. Sampler, exporter and batching typos fall back with one
warning, as the OpenTelemetry environment specification asks for enum and
numeric values, so a typo in the environment never stops the application.
Arguments to :func:`resolve_config`, :class:`TelemetryConfig` and
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
#: Seconds per OTLP export, retries included (OTLP's own default is 10 s; shorter
#: so a collector that hangs costs little at shutdown).
DEFAULT_EXPORT_TIMEOUT = 2.0
#: What a timeout of 0 ("no limit" in the specification) is taken as.
NO_LIMIT_TIMEOUT = 3600.0
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
EXPORTERS = ("otlp", "console")
DEFAULT_EXPORTERS: tuple[str, ...] = ("otlp",)
#: Base endpoint variables, highest precedence first (``OTEL_ENDPOINT`` is the seed's alias).
BASE_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_ENDPOINT")
TRACES_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


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


def parse_exporters(value: object) -> tuple[str, ...]:
    """``"otlp,console"`` / ``"none"`` / a sequence of names -> a tuple of exporter names.

    Names are stripped, lower-cased and deduplicated in order; ``none`` (alone)
    gives the empty tuple. Unknown names are left in (the validator refuses them).
    """
    if isinstance(value, str):
        items = [item.strip().lower() for item in value.split(",") if item.strip()]
    elif isinstance(value, tuple | list):
        items = [item.strip().lower() if isinstance(item, str) else item for item in value]
    else:
        return value  # type: ignore[return-value]  # refused by the validator
    if items == ["none"]:
        return ()
    return tuple(dict.fromkeys(items))


def _validate_exporters(
    instance: Any, attribute: attrs.Attribute[tuple[str, ...]], value: object
) -> None:
    accepted = "'none' or a comma-separated list of: " + ", ".join(EXPORTERS)
    if not isinstance(value, tuple) or not all(item in EXPORTERS for item in value):
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
        traces_exporter: Where finished spans go: ``otlp`` (to
            ``traces_endpoint``), ``console`` (standard output), both, or
            nothing (the empty tuple, ``OTEL_TRACES_EXPORTER=none``). A string
            such as ``"otlp,console"`` or ``"none"`` is accepted.
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
    traces_exporter: tuple[str, ...] = attrs.field(
        default=DEFAULT_EXPORTERS, converter=parse_exporters, validator=_validate_exporters
    )
    sampler: str = attrs.field(default=DEFAULT_SAMPLER, validator=_validate_sampler)
    sampler_ratio: float | None = attrs.field(default=None, validator=_validate_ratio)
    export_timeout: float = attrs.field(
        default=DEFAULT_EXPORT_TIMEOUT, validator=_validate_positive
    )
    schedule_delay: float = attrs.field(default=5.0, validator=_validate_positive)
    max_queue_size: int = attrs.field(default=2048, validator=_validate_positive)
    max_export_batch_size: int = attrs.field(default=512, validator=_validate_positive)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """Read the configuration from OpenTelemetry environment variables.

        The same as :func:`resolve_config` without arguments. See the module
        documentation for the variables, defaults and what a bad value does.

        Args:
            environ: The environment to read; ``os.environ`` by default.

        Returns:
            The configuration.

        Raises:
            TelemetryConfigError: If an endpoint variable is not an http(s)
                URL with a host.

        .. versionadded:: 0.1
        """
        return resolve_config(environ)

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


def _getter(environ: Mapping[str, str] | None) -> Any:
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or not value.strip():
            return None  # empty counts as unset (specification, "Parsing empty value")
        return value.strip()

    return get


def resolve_config(
    environ: Mapping[str, str] | None = None,
    *,
    config: TelemetryConfig | None = None,
    enabled: bool | None = None,
    service_name: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    endpoint: str | None = None,
    traces_endpoint: str | None = None,
    traces_exporter: str | tuple[str, ...] | None = None,
    sampler: str | None = None,
    sampler_ratio: float | None = None,
    export_timeout: float | None = None,
) -> TelemetryConfig:
    """The one place that decides where each telemetry setting comes from.

    An argument that is not None wins (``thunderline demo`` and ``thunderline
    run`` pass their command-line flags here), then ``config`` if given, else
    the ``OTEL_*`` environment, then the default. Endpoints: ``traces_endpoint``
    > ``endpoint`` (``/v1/traces`` appended) > ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    > ``OTEL_EXPORTER_OTLP_ENDPOINT`` > ``OTEL_ENDPOINT`` > ``http://localhost:4318``.
    ``sampler_ratio`` without ``sampler`` selects ``parentbased_traceidratio``
    unless a ratio sampler is configured already.

    Args:
        environ: The environment to read; ``os.environ`` by default. Not read
            when ``config`` is given.
        config: A complete configuration to start from instead of the environment.
        enabled: False turns recording off (spans become no-ops).
        service_name: The ``service.name`` resource attribute.
        resource_attributes: Resource attributes replacing the configured ones.
        endpoint: A base OTLP/HTTP URL.
        traces_endpoint: The full OTLP/HTTP traces URL, used verbatim.
        traces_exporter: ``otlp``, ``console``, both (``"otlp,console"``) or ``none``.
        sampler: A sampler name (see :class:`TelemetryConfig`).
        sampler_ratio: The ratio in [0, 1].
        export_timeout: Seconds one OTLP export may take, retries included.

    Returns:
        The configuration in effect.

    Raises:
        TelemetryConfigError: An argument or an endpoint variable has an
            unusable value.

    .. versionadded:: 0.1
    """
    base = _from_env(_getter(environ)) if config is None else config
    changes: dict[str, Any] = {}
    if enabled is not None:
        changes["enabled"] = enabled
    if service_name is not None:
        changes["service_name"] = service_name
    if resource_attributes is not None:
        changes["resource_attributes"] = resource_attributes
    if traces_endpoint is not None:
        changes["traces_endpoint"] = traces_endpoint
    elif endpoint is not None:
        changes["traces_endpoint"] = traces_endpoint_from_base(check_endpoint("endpoint", endpoint))
    if traces_exporter is not None:
        changes["traces_exporter"] = traces_exporter
    if sampler is not None:
        changes["sampler"] = sampler
    if sampler_ratio is not None:
        changes["sampler_ratio"] = sampler_ratio
        if sampler is None and base.sampler not in RATIO_SAMPLERS:
            changes["sampler"] = "parentbased_traceidratio"
    if export_timeout is not None:
        changes["export_timeout"] = export_timeout
    return attrs.evolve(base, **changes) if changes else base


def _from_env(get: Any) -> TelemetryConfig:
    traces_endpoint = get(TRACES_ENDPOINT_VARIABLE)
    if traces_endpoint is not None:
        traces_endpoint = check_endpoint(TRACES_ENDPOINT_VARIABLE, traces_endpoint)
    else:
        base_name = next((n for n in BASE_ENDPOINT_VARIABLES if get(n)), None)
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
    resource = _resource_from_env(get("OTEL_RESOURCE_ATTRIBUTES"))
    service_name = get("OTEL_SERVICE_NAME") or resource.get("service.name", "").strip()
    return TelemetryConfig(
        enabled=not _bool_from_env(get, "OTEL_SDK_DISABLED"),
        service_name=service_name or DEFAULT_SERVICE_NAME,
        resource_attributes=tuple((k, v) for k, v in resource.items() if k != "service.name"),
        traces_endpoint=traces_endpoint,
        traces_exporter=_exporters_from_env(get("OTEL_TRACES_EXPORTER")),
        sampler=sampler,
        sampler_ratio=ratio,
        export_timeout=_timeout_from_env(get),
        schedule_delay=_int_from_env(get, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        max_queue_size=max_queue_size,
        max_export_batch_size=batch_size,
    )


def _bool_from_env(get: Any, name: str) -> bool:
    raw: str | None = get(name)
    if raw is None or raw.lower() == "false":
        return False
    if raw.lower() == "true":
        return True
    _logger.warning("%s=%r is neither true nor false; using false", name, raw)
    return False


def _exporters_from_env(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_EXPORTERS
    names = parse_exporters(raw)
    known = tuple(name for name in names if name in EXPORTERS)
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        fallback = known or DEFAULT_EXPORTERS
        _logger.warning(
            "OTEL_TRACES_EXPORTER=%r: %s not supported (known: none, %s); using %s",
            raw,
            ", ".join(repr(name) for name in unknown),
            ", ".join(EXPORTERS),
            ",".join(fallback),
        )
        return fallback
    return known


def _sampler_from_env(get: Any) -> tuple[str, float | None]:
    name: str | None = get("OTEL_TRACES_SAMPLER")
    if name is None:
        if get("OTEL_SAMPLING_RATIO") is None:
            return DEFAULT_SAMPLER, None  # OTEL_TRACES_SAMPLER_ARG alone is not used
        name = "parentbased_traceidratio"
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
    if name not in RATIO_SAMPLERS:
        return name, None
    for arg_name in ("OTEL_TRACES_SAMPLER_ARG", "OTEL_SAMPLING_RATIO"):
        arg: str | None = get(arg_name)
        if arg is None:
            continue
        try:
            return name, _check_ratio(arg_name, float(arg))
        except (ValueError, TelemetryConfigError):
            _logger.warning("%s=%r is not a number between 0.0 and 1.0; ignored", arg_name, arg)
    return name, None


def _timeout_from_env(get: Any) -> float:
    """``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT`` (ms) in seconds.

    0 means no limit in the specification; it is taken as one hour. A value
    that is not a non-negative integer is ignored with one warning.
    """
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw: str | None = get(name)
        if raw is None:
            continue
        try:
            millis = int(raw)
        except ValueError:
            millis = -1
        if millis < 0:
            _logger.warning("%s=%r is not a number of milliseconds >= 0; ignored", name, raw)
            continue
        return NO_LIMIT_TIMEOUT if millis == 0 else millis / 1000
    return DEFAULT_EXPORT_TIMEOUT


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


def _resource_from_env(raw: str | None) -> dict[str, str]:
    pairs: dict[str, str] = dict(DEFAULT_RESOURCE_ATTRIBUTES)
    if raw is None:
        return pairs
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
    return pairs
