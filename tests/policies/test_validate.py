from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, field_validator

import meshlite as ml
from meshlite.policies._validate_policy import Validate, ValidationError, ValidationFailed

SECRET = "hunter2-s3cr3t"


class User(BaseModel):
    email: str
    name: str = "anon"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"value is not a valid email address: {value!r} has no @")
        return value


class CreateUser(BaseModel):
    user: User
    age: int


def create_user(user: Any, age: Any = 30) -> dict[str, Any]:
    return {"user": user, "age": age}


def no_secret(error: BaseException) -> None:
    """The secret appears nowhere a log line or a traceback could show it."""
    assert isinstance(error, ValidationError)
    for text in (str(error), repr(error), *error.errors, *error.fields):
        assert SECRET not in text
    assert error.__cause__ is None
    assert error.__context__ is None


# -- arguments ---------------------------------------------------------------


def test_valid_arguments_pass_unconverted() -> None:
    calls: list[tuple[Any, Any]] = []

    def fn(user: Any, age: Any) -> str:
        calls.append((user, age))
        return "ok"

    user = {"email": "a@example.com"}
    assert ml.Pipeline(Validate(args=CreateUser)).call(fn, user, "41") == "ok"
    assert calls == [(user, "41")]  # validated, not converted: still a dict and a str


def test_invalid_argument_names_the_field_not_the_value() -> None:
    called: list[int] = []

    def fn(user: Any, age: int) -> None:
        called.append(1)

    with pytest.raises(ValidationError) as info:
        ml.Pipeline(Validate(args=CreateUser)).call(fn, {"email": SECRET}, 3)
    error = info.value
    assert str(error) == ("Validate: argument 'user.email' of 'test_invalid_argument_names_"
                          "the_field_not_the_value.<locals>.fn' is invalid: value is not a "
                          "valid email address (the value is not shown)")
    assert error.fields == ("user.email",)
    assert error.stage == "args"
    assert error.policy == "validate"
    assert isinstance(error, ml.MeshliteError)
    assert isinstance(error, ValueError)
    assert called == []
    no_secret(error)


def test_several_problems_listed_and_capped() -> None:
    class Many(BaseModel):
        model_config = ConfigDict(strict=True)
        a: int
        b: int
        c: int
        d: int
        e: int
        f: int
        g: int

    def fn(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any) -> None: ...

    with pytest.raises(ValidationError) as info:
        ml.Pipeline(Validate(args=Many)).call(fn, *(["x"] * 7))
    message = str(info.value)
    assert message.startswith("Validate: 7 arguments of")
    assert "'a': Input should be a valid integer" in message
    assert "and 2 more (the values are not shown)" in message
    assert info.value.fields == ("a", "b", "c", "d", "e", "f", "g")


def test_defaults_and_kwargs_are_bound() -> None:
    class Args(BaseModel):
        user: User
        age: int
        role: str

    def fn(user: Any, age: int = 30, **extra: Any) -> str:
        return "ok"

    pipe = ml.Pipeline(Validate(args=Args))
    assert pipe.call(fn, {"email": "a@b"}, role="admin") == "ok"  # age from its default
    with pytest.raises(ValidationError, match=r"argument 'role' .* Field required"):
        pipe.call(fn, {"email": "a@b"})


def test_arguments_that_do_not_fit_the_signature() -> None:
    called: list[int] = []

    def fn(user: Any) -> None:
        called.append(1)

    with pytest.raises(ValidationError, match=r"do not fit its signature .*unexpected keyword"):
        ml.Pipeline(Validate(args=CreateUser)).call(fn, {"email": "a@b"}, token=SECRET)  # type: ignore[call-arg]
    assert called == []


def test_callable_check_of_all_arguments() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def positive_age(*args: Any, **kwargs: Any) -> bool:
        seen.append((args, kwargs))
        return bool(kwargs.get("age", 0) > 0)

    pipe = ml.Pipeline(Validate(args=positive_age))
    assert pipe.call(create_user, "u", age=3)["age"] == 3
    assert seen == [(("u",), {"age": 3})]
    with pytest.raises(ValidationError) as info:
        pipe.call(create_user, SECRET, age=-1)
    assert str(info.value).startswith(
        "Validate: the arguments of 'create_user' are invalid: failed check "
        "'test_callable_check_of_all_arguments.<locals>.positive_age' (it returned a false "
        "value) (the values are not shown)")
    no_secret(info.value)


@pytest.mark.parametrize("verdict", [None, True, 1])
def test_callable_none_or_truthy_is_valid(verdict: Any) -> None:
    assert ml.Pipeline(Validate(args=lambda *a: verdict)).call(create_user, "u") is not None


def test_raising_check_hides_the_text_after_the_colon_and_quotes() -> None:
    def strict(token: str) -> None:
        if token == SECRET:
            raise ValueError(f"'{SECRET}' is a leaked token: {SECRET}")

    with pytest.raises(ValidationError) as info:
        ml.Pipeline(Validate(args={"user": strict})).call(create_user, SECRET)
    assert "failed check 'test_raising_check_hides_the_text_after_the_colon_and_quotes." \
        "<locals>.strict' (ValueError: … is a leaked token)" in str(info.value)
    no_secret(info.value)


def test_raising_check_of_another_kind_shows_its_type_only() -> None:
    def lookup(user: Any) -> None:
        raise KeyError(SECRET)

    with pytest.raises(ValidationError, match=r"\(KeyError\)") as info:
        ml.Pipeline(Validate(args={"user": lookup})).call(create_user, SECRET)
    no_secret(info.value)


def test_mapping_of_parameter_checks() -> None:
    pipe = ml.Pipeline(Validate(args={"user": User, "age": lambda age: age >= 18}))
    assert pipe.call(create_user, {"email": "a@b"}, 20)["age"] == 20
    with pytest.raises(ValidationError) as info:
        pipe.call(create_user, {"email": SECRET}, 12)
    assert info.value.fields == ("user.email", "age")
    no_secret(info.value)


def test_mapping_naming_an_unknown_parameter_is_a_config_error() -> None:
    with pytest.raises(ml.ConfigError, match=r"'nope', which 'create_user' does not have"):
        ml.Pipeline(Validate(args={"nope": int})).call(create_user, "u")


def test_sequence_paths_use_indices() -> None:
    def fn(users: Any) -> None: ...

    with pytest.raises(ValidationError) as info:
        ml.Pipeline(Validate(args={"users": list[User]})).call(
            fn, [{"email": "a@b"}, {"email": SECRET}])
    assert info.value.fields == ("users[1].email",)
    no_secret(info.value)


# -- results -------------------------------------------------------------------


def test_result_model_returns_the_original_value() -> None:
    value = {"email": "a@b", "extra": 1}
    assert ml.Pipeline(Validate(result=User)).call(lambda: value) is value


def test_invalid_result_names_the_path() -> None:
    with pytest.raises(ValidationError) as info:
        ml.Pipeline(Validate(result=User)).call(lambda: {"email": SECRET})
    assert "<lambda>' is invalid at 'email': value is not a valid email address (the value " \
        "is not shown)" in str(info.value)
    assert info.value.stage == "result"
    no_secret(info.value)


def test_result_type_adapter_and_callable() -> None:
    adapter = TypeAdapter(int | None)
    assert ml.Pipeline(Validate(result=adapter)).call(lambda: None) is None
    with pytest.raises(ValidationError, match=r"Input should be a valid integer"):
        ml.Pipeline(Validate(result=adapter)).call(lambda: "x")
    with pytest.raises(ValidationError,
                       match=r"failed check '\S*<lambda> at test_validate.py:\d+'"):
        ml.Pipeline(Validate(result=lambda r: r > 0)).call(lambda: -1)


# -- async ---------------------------------------------------------------------


async def test_async_arguments_and_result() -> None:
    called: list[int] = []

    @ml.Pipeline(Validate(args=CreateUser, result=User))
    async def make(user: Any, age: int) -> Any:
        called.append(age)
        await asyncio.sleep(0)
        return user

    assert await make({"email": "a@b"}, 1) == {"email": "a@b"}
    with pytest.raises(ValidationError) as info:
        await make({"email": SECRET}, 2)
    assert called == [1]
    no_secret(info.value)

    @ml.Pipeline(Validate(result=User))
    async def bad() -> Any:
        return {"email": SECRET}

    with pytest.raises(ValidationError, match=r"result of .* invalid at 'email'"):
        await bad()


async def test_cancellation_propagates() -> None:
    @ml.Pipeline(Validate(args=lambda *a: True, result=lambda r: True))
    async def slow() -> int:
        await asyncio.sleep(10)
        return 1

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_keyboard_interrupt_in_a_check_propagates() -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ml.Pipeline(Validate(args=interrupted)).call(create_user, "u")


# -- in a pipeline ---------------------------------------------------------------


def test_invalid_arguments_are_never_retried() -> None:
    calls: list[int] = []

    def fn(user: Any, age: int) -> None:
        calls.append(1)
        raise ConnectionError

    pipe = ml.Pipeline(Validate(args=CreateUser),
                       ml.Retry(attempts=3, on=Exception, backoff=ml.backoff.constant(0.0)))
    with pytest.raises(ValidationError):
        pipe.call(fn, {"email": SECRET}, 1)
    assert calls == []


def test_bad_result_inside_retry_is_not_retried_by_default_but_can_be() -> None:
    answers = iter([{"email": "broken"}, {"email": "a@b"}])
    calls: list[int] = []

    def fn() -> Any:
        calls.append(1)
        return next(answers)

    no_retry = ml.Pipeline(ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0)),
                           Validate(result=User))
    with pytest.raises(ValidationError):
        no_retry.call(fn)
    assert calls == [1]

    answers = iter([{"email": "broken"}, {"email": "a@b"}])
    retry = ml.Pipeline(ml.Retry(attempts=3, on=ValidationError, backoff=ml.backoff.constant(0.0)),
                        Validate(result=User))
    assert retry.call(fn) == {"email": "a@b"}
    assert len(calls) == 3


def test_bad_results_inside_a_breaker_open_it() -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=30.0)
    pipe = ml.Pipeline(breaker, Validate(result=User))
    for _ in range(2):
        with pytest.raises(ValidationError):
            pipe.call(lambda: {"email": "broken"})
    assert breaker.state == "open"


def test_event_carries_fields_not_values() -> None:
    events: list[ml.Event] = []
    policy = Validate(args=CreateUser)
    policy.add_hook(events.append)
    with pytest.raises(ValidationError):
        ml.Pipeline(policy).call(create_user, {"email": SECRET}, 1)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ValidationFailed)
    assert (event.stage, event.fields, event.operation) == ("args", ("user.email",),
                                                           "create_user")
    assert SECRET not in repr(event)


# -- on a mesh service: the backend argument is not validated -------------------


def _mesh(policy: ml.Policy) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"], pipeline=ml.Pipeline(policy),
                               outlier_detection=None)])


def test_mesh_call_binds_arguments_after_the_backend() -> None:
    class Args(BaseModel):
        user: User
        age: int = 1

    def create(backend: Any, user: Any, age: int = 1) -> str:
        return f"{backend.address} {user['email']}"

    mesh = _mesh(Validate(args=Args))
    assert mesh.call_sync("users", create, {"email": "a@b"}) == "http://127.0.0.1:9 a@b"
    with pytest.raises(ValidationError, match=r"argument 'user.email' of 'test_mesh_call_"):
        mesh.call_sync("users", create, {"email": SECRET})


async def test_async_mesh_call_binds_arguments_after_the_backend() -> None:
    async def lookup(backend: Any, uid: Any = 0) -> Any:
        return uid

    mesh = _mesh(Validate(args={"uid": int}))
    assert await mesh.call("users", lookup, 7) == 7
    with pytest.raises(ValidationError, match=r"argument 'uid'"):
        await mesh.call("users", lookup, "seven")


# -- configuration ------------------------------------------------------------------


async def _acheck(value: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({}, "give at least one of args= or result=; none was given"), ({"args": 5}, "args"),
     ({"result": "x"}, "result"),
     ({"args": {}}, "args"), ({"args": {"not a name": int}}, "args"),
     ({"result": _acheck}, "result"), ({"args": {"user": 3}}, "args['user']")],
)
def test_bad_options_name_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=rf"^Validate: {field.replace('[', '.')}"):
        Validate(**kwargs)


def test_a_type_without_pydantic_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    monkeypatch.setitem(sys.modules, "pydantic", None)  # as if not installed
    with pytest.raises(ml.ConfigError, match=r"needs pydantic >= 2"):
        Validate(result=Point)


def test_callable_checks_do_not_import_pydantic() -> None:
    code = (
        "import sys, meshlite as ml\n"
        "from meshlite.policies._validate_policy import Validate\n"
        "p = ml.Pipeline(Validate(args=lambda *a: True, result=lambda r: True))\n"
        "assert p.call(lambda: 1) == 1\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_repr_names_the_checks() -> None:
    assert repr(Validate(args=CreateUser, result=User)) == \
        "Validate(args=CreateUser, result=User)"
    assert repr(Validate(args={"age": int})) == "Validate(args={'age': int})"
