"""Saga definitions: named inputs, uniquely named steps, and the return step.

A definition is frozen and validated when built; run state lives elsewhere
(:mod:`thunderline.sagas._state`)::

    builder = SagaBuilder("checkout", inputs=["sku", "card"])
    builder.step("reserve", reserve, args={"sku": Input("sku")}, undo=release)
    builder.step(
        "charge", charge,
        args={"card": Input("card"), "amount": StepResult("reserve", "price")},
    )
    saga = builder.build(returns="charge")

Each argument says where its value comes from: a saga :class:`Input`, the
:class:`StepResult` of another step (optionally a sub-path into it), or a
literal :class:`Value`. Arguments that name steps are the edges of the
dependency graph; ``wait_for`` adds ordering edges that carry no data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from ._errors import (
    DependencyCycleError,
    DuplicateStepError,
    InvalidStepError,
    SagaDefinitionError,
    UnknownDependencyError,
    UnknownInputError,
    UnknownReturnStepError,
)
from ._step import CompensateFn, FunctionStep, RunFn, Step, UndoFn

__all__ = [
    "ArgumentSource",
    "Input",
    "Saga",
    "SagaBuilder",
    "StepResult",
    "StepSpec",
    "Value",
]

RECOVERY_POLICIES = ("compensate", "resume")
"""What a journaled saga supervisor does with an unfinished run after a crash."""

DEFAULT_MAX_RETRIES = 3
"""Retries allowed per step unless the step says otherwise (finite, unlike Reactor)."""


@attrs.frozen
class Input:
    """An argument taken from the saga input ``name``."""

    name: str


@attrs.frozen(init=False)
class StepResult:
    """An argument taken from the result of step ``step``.

    ``path`` indexes into that result: each element is used as ``value[key]``
    for mappings and sequences, or as an attribute name otherwise.
    """

    step: str
    path: tuple[object, ...]

    def __init__(self, step: str, *path: object) -> None:
        self.__attrs_init__(step, path)


@attrs.frozen(eq=False)
class Value:
    """A literal argument value."""

    value: object


ArgumentSource = Input | StepResult | Value
_ACCEPTED_SOURCES = "Input(name), StepResult(step, *path) or Value(literal)"


@attrs.frozen(eq=False)
class StepSpec:
    """One step of a saga definition.

    Attributes:
        name: Unique name within the saga.
        impl: A :class:`Step` or a nested :class:`Saga`.
        arguments: ``(argument name, source)`` pairs, in declaration order.
        wait_for: Steps that must complete first without passing data.
        max_retries: Retries allowed after the first attempt (finite).
        timeout: Bound in seconds on each attempt, or ``None``.
        concurrent: If false the step runs alone: no other forward step of the
            same run is running while it runs.
    """

    name: str
    impl: Step | Saga
    arguments: tuple[tuple[str, ArgumentSource], ...] = ()
    wait_for: tuple[str, ...] = ()
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float | None = None
    concurrent: bool = True

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Names of the steps this step needs, without repeats, in declaration order."""
        deps: dict[str, None] = {}
        for _, source in self.arguments:
            if isinstance(source, StepResult):
                deps[source.step] = None
        for name in self.wait_for:
            deps[name] = None
        return tuple(deps)

    @property
    def is_nested(self) -> bool:
        """Whether this step runs a nested saga."""
        return isinstance(self.impl, Saga)

    @property
    def can_undo(self) -> bool:
        """Whether rolling back this step does anything."""
        if isinstance(self.impl, Saga):
            return True
        return self.impl.can_undo


@attrs.frozen(eq=False)
class Saga:
    """A validated, immutable saga definition. Build one with :class:`SagaBuilder`.

    Attributes:
        name: The saga's name (used in errors and telemetry).
        inputs: Declared input names.
        steps: The steps, in definition order.
        returns: Name of the step whose result is the saga's result.
        version: The definition's version, journaled with every run; a journal's
            unfinished runs are recovered by the definition of the same name and
            version (bump it when a change makes old runs unrecoverable by it).
        recovery: What a saga supervisor with a journal does on start-up with a
            run of this saga that has no outcome (its process died):
            ``"compensate"`` (default: undo its completed steps, newest first)
            or ``"resume"`` (go on from its journaled completed steps; steps
            that started and did not complete run again, see
            :attr:`StepContext.idempotency_key`).

    Raises:
        SagaDefinitionError: (a subclass naming the step) for a duplicate name,
            an unknown dependency or input, a cycle, or an unknown return step.
    """

    name: str
    inputs: tuple[str, ...]
    steps: tuple[StepSpec, ...]
    returns: str
    version: int = 1
    recovery: str = "compensate"
    _by_name: Mapping[str, StepSpec] = attrs.field(init=False, repr=False)
    _dependents: Mapping[str, tuple[str, ...]] = attrs.field(init=False, repr=False)
    _plan: _SagaPlan = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise SagaDefinitionError(
                self.name, f"version must be an int >= 1, got {self.version!r}"
            )
        if self.recovery not in RECOVERY_POLICIES:
            raise SagaDefinitionError(
                self.name, f"recovery must be 'compensate' or 'resume', got {self.recovery!r}"
            )
        by_name: dict[str, StepSpec] = {}
        for spec in self.steps:
            _check_name(self.name, spec.name)
            if spec.name in by_name:
                raise DuplicateStepError(self.name, spec.name)
            by_name[spec.name] = spec
        dependents: dict[str, list[str]] = {name: [] for name in by_name}
        for spec in self.steps:
            _check_options(self.name, spec)
            for arg, source in spec.arguments:
                if isinstance(source, Input) and source.name not in self.inputs:
                    raise UnknownInputError(self.name, spec.name, source.name, self.inputs)
                if not isinstance(source, Input | StepResult | Value):
                    raise InvalidStepError(
                        self.name, spec.name, f"argument {arg!r} as {_ACCEPTED_SOURCES}", source
                    )
            for dep in spec.dependencies:
                if dep not in by_name:
                    raise UnknownDependencyError(self.name, spec.name, dep, list(by_name))
                dependents[dep].append(spec.name)
        if self.returns not in by_name:
            raise UnknownReturnStepError(self.name, self.returns, list(by_name))
        cycle = _find_cycle(self.steps, by_name)
        if cycle is not None:
            raise DependencyCycleError(self.name, cycle)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_dependents", {k: tuple(v) for k, v in dependents.items()})
        object.__setattr__(self, "_plan", _SagaPlan.of(self.inputs, self.steps))

    def step(self, name: str) -> StepSpec:
        """The step called ``name``.

        Raises:
            KeyError: if there is no such step.
        """
        return self._by_name[name]

    def dependents(self, name: str) -> tuple[str, ...]:
        """Names of the steps that depend directly on step ``name``."""
        return self._dependents[name]


ARG_INPUT = 0
ARG_VALUE = 1
ARG_RESULT = 2
ARG_RESULT_PATH = 3

ArgumentPlan = tuple[tuple[str, int, Any], ...]
"""``(argument name, ARG_* kind, key)`` per argument: the input name, the literal,
the step name, or the :class:`StepResult` (with a path)."""


@attrs.frozen(eq=False)
class _SagaPlan:
    """What the executor needs per step, computed once per definition (indexed like ``steps``).

    Attributes:
        inputs: The declared input names.
        names: The step names.
        index: Step name to its position in ``steps``.
        dependencies: Each step's dependency names (as :attr:`StepSpec.dependencies`).
        dependents: Positions of the steps that depend directly on each step.
        arguments: How to resolve each step's arguments (see :data:`ArgumentPlan`).
        roots: Positions of the steps without dependencies.
        unmet: Each step's number of dependencies (a fresh run's counters).
        arguments_of: Step name to its argument plan.
        dependents_of: Step name to the positions of its direct dependents.
    """

    inputs: frozenset[str]
    names: tuple[str, ...]
    index: Mapping[str, int]
    dependencies: tuple[tuple[str, ...], ...]
    dependents: tuple[tuple[int, ...], ...]
    arguments: tuple[ArgumentPlan, ...]
    roots: tuple[int, ...]
    unmet: tuple[int, ...]
    arguments_of: Mapping[str, ArgumentPlan]
    dependents_of: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, inputs: Sequence[str], steps: Sequence[StepSpec]) -> _SagaPlan:
        index = {spec.name: i for i, spec in enumerate(steps)}
        dependencies = tuple(spec.dependencies for spec in steps)
        dependents: list[list[int]] = [[] for _ in steps]
        for i, deps in enumerate(dependencies):
            for dep in deps:
                dependents[index[dep]].append(i)
        arguments: list[ArgumentPlan] = []
        for spec in steps:
            plan: list[tuple[str, int, Any]] = []
            for name, source in spec.arguments:
                if isinstance(source, Input):
                    plan.append((name, ARG_INPUT, source.name))
                elif isinstance(source, Value):
                    plan.append((name, ARG_VALUE, source.value))
                elif isinstance(source, StepResult) and not source.path:
                    plan.append((name, ARG_RESULT, source.step))
                else:
                    plan.append((name, ARG_RESULT_PATH, source))
            arguments.append(tuple(plan))
        names = tuple(index)
        return cls(
            inputs=frozenset(inputs),
            names=names,
            index=index,
            dependencies=dependencies,
            dependents=tuple(tuple(d) for d in dependents),
            arguments=tuple(arguments),
            roots=tuple(i for i, deps in enumerate(dependencies) if not deps),
            unmet=tuple(len(deps) for deps in dependencies),
            arguments_of=dict(zip(names, arguments, strict=True)),
            dependents_of={name: tuple(d) for name, d in zip(names, dependents, strict=True)},
        )


def _check_name(saga: str, name: object) -> None:
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidStepError(saga, str(name), "a non-empty str name without '/'", name)


def _check_options(saga: str, spec: StepSpec) -> None:
    if not isinstance(spec.impl, Step | Saga):
        raise InvalidStepError(
            saga, spec.name, "a Step instance, a Saga, or an async function", spec.impl
        )
    if isinstance(spec.max_retries, bool) or not isinstance(spec.max_retries, int):
        raise InvalidStepError(saga, spec.name, "max_retries as an int >= 0", spec.max_retries)
    if spec.max_retries < 0:
        raise InvalidStepError(saga, spec.name, "max_retries as an int >= 0", spec.max_retries)
    if spec.timeout is not None and not (
        isinstance(spec.timeout, int | float) and spec.timeout > 0
    ):
        raise InvalidStepError(saga, spec.name, "timeout as None or a number > 0", spec.timeout)
    if isinstance(spec.impl, Saga):
        given = {arg for arg, _ in spec.arguments}
        if given != set(spec.impl.inputs):
            raise InvalidStepError(
                saga,
                spec.name,
                f"arguments naming exactly the nested saga's inputs {sorted(spec.impl.inputs)}",
                sorted(given),
            )


def _find_cycle(steps: Sequence[StepSpec], by_name: Mapping[str, StepSpec]) -> list[str] | None:
    """Return one dependency cycle (first name repeated at the end), or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(by_name, white)
    for root in steps:
        if color[root.name] != white:
            continue
        # Iterative DFS; the stack holds (name, iterator over its dependencies).
        path = [root.name]
        color[root.name] = grey
        stack = [iter(root.dependencies)]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                color[path.pop()] = black
                stack.pop()
            elif color[dep] == grey:
                return [*path[path.index(dep) :], dep]
            elif color[dep] == white:
                color[dep] = grey
                path.append(dep)
                stack.append(iter(by_name[dep].dependencies))
    return None


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class SagaBuilder:
    """Collects steps, then builds a validated :class:`Saga`.

    Args:
        name: The saga's name.
        inputs: Declared input names.
        version: The definition's version (see :attr:`Saga.version`).
        recovery: ``"compensate"`` or ``"resume"`` (see :attr:`Saga.recovery`).

    Example::

        b = SagaBuilder("greet", inputs=["who"])

        @b.step_function(args={"who": Input("who")})
        async def hello(who):
            return f"hello {who}"

        saga = b.build(returns="hello")
    """

    def __init__(
        self,
        name: str,
        *,
        inputs: Iterable[str] = (),
        version: int = 1,
        recovery: str = "compensate",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise SagaDefinitionError(str(name), f"expected a non-empty str name, got {name!r}")
        self._name = name
        self._version = version
        self._recovery = recovery
        self._inputs = tuple(inputs)
        self._steps: list[StepSpec] = []

    def step(
        self,
        name: str,
        impl: Step | Saga | RunFn,
        /,
        *,
        args: Mapping[str, ArgumentSource] | None = None,
        wait_for: Iterable[str] = (),
        max_retries: int | None = None,
        timeout: float | None = None,
        concurrent: bool = True,
        undo: UndoFn | None = None,
        compensate: CompensateFn | None = None,
        backoff: float | Callable[[object, int], float] = 0.0,
    ) -> SagaBuilder:
        """Add a step and return the builder (for chaining).

        Args:
            name: Unique step name.
            impl: A :class:`Step`, a nested :class:`Saga`, or an async function
                called as ``fn(**args)``.
            args: Argument name to source.
            wait_for: Extra ordering dependencies.
            max_retries: Retries after the first attempt; default 3, or 0 for
                a nested saga.
            timeout: Bound on each attempt in seconds.
            concurrent: Whether the step may run alongside other steps.
            undo: With a function ``impl``: ``undo(value, **args)``.
            compensate: With a function ``impl``: ``compensate(error, **args)``.
            backoff: With a function ``impl``: minimum retry delay (seconds) or
                ``fn(reason, attempt) -> seconds``.

        Raises:
            InvalidStepError: if ``undo``/``compensate``/``backoff`` are given
                with a Step or Saga ``impl``, or ``impl`` has the wrong type.
        """
        hooks_given = undo is not None or compensate is not None or backoff != 0.0
        if isinstance(impl, Step | Saga):
            if hooks_given:
                raise InvalidStepError(
                    self._name,
                    name,
                    "undo/compensate/backoff only with a function impl "
                    "(define them as methods on a Step subclass)",
                    impl,
                )
            concrete: Step | Saga = impl
        elif callable(impl):
            concrete = FunctionStep(impl, undo=undo, compensate=compensate, backoff=backoff)
        else:
            raise InvalidStepError(
                self._name, name, "a Step instance, a Saga, or an async function", impl
            )
        if max_retries is None:
            max_retries = 0 if isinstance(concrete, Saga) else DEFAULT_MAX_RETRIES
        if args is not None and not isinstance(args, Mapping):
            raise InvalidStepError(self._name, name, "args as a mapping of name to source", args)
        self._steps.append(
            StepSpec(
                name=name,
                impl=concrete,
                arguments=tuple((args or {}).items()),
                wait_for=tuple(wait_for),
                max_retries=max_retries,
                timeout=timeout,
                concurrent=concurrent,
            )
        )
        return self

    def step_function(
        self,
        name: str | None = None,
        *,
        args: Mapping[str, ArgumentSource] | None = None,
        wait_for: Iterable[str] = (),
        max_retries: int | None = None,
        timeout: float | None = None,
        concurrent: bool = True,
        undo: UndoFn | None = None,
        compensate: CompensateFn | None = None,
        backoff: float | Callable[[object, int], float] = 0.0,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`step` for an async function (default name: ``__name__``)."""

        def decorate(fn: F) -> F:
            self.step(
                name or fn.__name__,
                fn,
                args=args,
                wait_for=wait_for,
                max_retries=max_retries,
                timeout=timeout,
                concurrent=concurrent,
                undo=undo,
                compensate=compensate,
                backoff=backoff,
            )
            return fn

        return decorate

    def build(self, *, returns: str) -> Saga:
        """Validate and return the :class:`Saga`.

        Args:
            returns: Name of the step whose result is the saga's result.

        Raises:
            SagaDefinitionError: see :class:`Saga`.
        """
        return Saga(
            name=self._name,
            inputs=self._inputs,
            steps=tuple(self._steps),
            returns=returns,
            version=self._version,
            recovery=self._recovery,
        )
