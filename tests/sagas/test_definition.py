"""Saga definitions: builder, decorator, and validation errors naming the step."""

from __future__ import annotations

import pytest

from thunderline.runtime._errors import ThunderlineError
from thunderline.sagas import (
    DependencyCycleError,
    DuplicateStepError,
    Input,
    InvalidStepError,
    SagaBuilder,
    SagaDefinitionError,
    SagaError,
    Step,
    StepResult,
    UnknownDependencyError,
    UnknownInputError,
    UnknownReturnStepError,
    Value,
)


async def noop(**kwargs: object) -> None:
    return None


def test_builder_and_decorator_build_the_same_graph() -> None:
    b = SagaBuilder("s", inputs=["x"])
    b.step("a", noop, args={"x": Input("x")})

    @b.step_function(args={"a": StepResult("a", "k", 0), "lit": Value([1])}, wait_for=["a"])
    async def c(a: object, lit: object) -> None:
        return None

    saga = b.build(returns="c")
    assert [s.name for s in saga.steps] == ["a", "c"]
    assert saga.step("c").dependencies == ("a",)
    assert saga.dependents("a") == ("c",)
    assert saga.step("c").max_retries == 3
    assert StepResult("a", "k", 0).path == ("k", 0)


def test_duplicate_step_is_rejected_with_its_name() -> None:
    b = SagaBuilder("s").step("a", noop).step("a", noop)
    with pytest.raises(DuplicateStepError) as info:
        b.build(returns="a")
    assert info.value.step == "a"
    assert info.value.saga == "s"
    assert str(info.value) == "saga 's': duplicate step name 'a'"
    assert isinstance(info.value, SagaDefinitionError | ValueError | SagaError | ThunderlineError)


def test_unknown_dependency_names_step_and_dependency() -> None:
    b = SagaBuilder("s").step("a", noop).step("b", noop, args={"v": StepResult("zz")})
    with pytest.raises(UnknownDependencyError) as info:
        b.build(returns="b")
    assert (info.value.step, info.value.dependency, info.value.known) == ("b", "zz", ("a", "b"))
    assert isinstance(info.value, LookupError)
    assert "step 'b' depends on unknown step 'zz'" in str(info.value)


def test_unknown_wait_for_is_an_unknown_dependency() -> None:
    b = SagaBuilder("s").step("a", noop, wait_for=["ghost"])
    with pytest.raises(UnknownDependencyError, match="'ghost'"):
        b.build(returns="a")


def test_cycle_is_shown() -> None:
    b = (
        SagaBuilder("s")
        .step("a", noop, args={"v": StepResult("c")})
        .step("b", noop, args={"v": StepResult("a")})
        .step("c", noop, args={"v": StepResult("b")})
    )
    with pytest.raises(DependencyCycleError) as info:
        b.build(returns="c")
    assert info.value.cycle == ("a", "c", "b", "a")
    assert "dependency cycle: a -> c -> b -> a" in str(info.value)


def test_self_dependency_is_a_cycle() -> None:
    b = SagaBuilder("s").step("a", noop, wait_for=["a"])
    with pytest.raises(DependencyCycleError, match="a -> a"):
        b.build(returns="a")


def test_unknown_return_step() -> None:
    with pytest.raises(UnknownReturnStepError) as info:
        SagaBuilder("s").step("a", noop).build(returns="b")
    assert info.value.step == "b"
    assert "return step 'b'" in str(info.value)


def test_unknown_input() -> None:
    b = SagaBuilder("s", inputs=["x"]).step("a", noop, args={"y": Input("y")})
    with pytest.raises(UnknownInputError) as info:
        b.build(returns="a")
    assert (info.value.step, info.value.input, info.value.known) == ("a", "y", ("x",))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_retries": -1}, "max_retries as an int >= 0"),
        ({"max_retries": True}, "max_retries as an int >= 0"),
        ({"timeout": 0}, "timeout as None or a number > 0"),
        ({"args": {"x": "x"}}, "Input(name), StepResult(step, *path) or Value(literal)"),
        ({"args": ["x"]}, "args as a mapping"),
    ],
)
def test_bad_step_options_list_accepted_shapes(options: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidStepError) as info:
        SagaBuilder("s").step("a", noop, **options).build(returns="a")  # type: ignore[arg-type]
    assert info.value.step == "a"
    assert expected in str(info.value)


def test_bad_impl_and_bad_names() -> None:
    with pytest.raises(InvalidStepError, match="a Step instance, a Saga, or an async function"):
        SagaBuilder("s").step("a", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidStepError, match="without '/'"):
        SagaBuilder("s").step("a/b", noop).build(returns="a/b")
    with pytest.raises(SagaDefinitionError, match="non-empty str name"):
        SagaBuilder("")


def test_hooks_only_with_function_steps() -> None:
    class S(Step):
        async def run(self, args: object, ctx: object) -> None:
            return None

    with pytest.raises(InvalidStepError, match="only with a function impl"):
        SagaBuilder("s").step("a", S(), undo=noop)


def test_nested_saga_arguments_must_match_its_inputs() -> None:
    inner = SagaBuilder("inner", inputs=["x"]).step("i", noop).build(returns="i")
    with pytest.raises(InvalidStepError, match="exactly the nested saga's inputs"):
        SagaBuilder("outer").step("n", inner).build(returns="n")
    outer = SagaBuilder("outer").step("n", inner, args={"x": Value(1)}).build(returns="n")
    assert outer.step("n").is_nested
    assert outer.step("n").max_retries == 0
