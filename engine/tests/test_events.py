"""Exit codes and error kinds are those of `schemas/json/engine-errors.json` (emitted from schemas/errors.ts)."""

import json

from engine import events
from engine.events import UserError

from .conftest import SCHEMAS_DIR

ENGINE_ERRORS = json.loads((SCHEMAS_DIR / "engine-errors.json").read_text())


def every_user_error_class() -> list[type]:
    import engine.export  # noqa: F401  ParityError lives beside the export it fails

    found, todo = [], [UserError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_exit_codes_are_the_emitted_ones():
    constants = {name[len("EXIT_"):].lower(): value for name, value in vars(events).items() if name.startswith("EXIT_")}
    assert constants == ENGINE_ERRORS["exitCodes"]


def test_each_error_class_has_the_kind_and_exit_code_of_the_emitted_ones():
    classes = every_user_error_class()
    by_kind = {cls.kind: cls.exit_code for cls in classes}
    assert len(by_kind) == len(classes), "two error classes share a kind"
    # UserError itself is the `crash` kind (cli.py emits it for any other exception); each subclass is a final failure.
    assert by_kind == ENGINE_ERRORS["errorKinds"]
    assert {cls.__name__ for cls in classes if cls is not UserError} == set(ENGINE_ERRORS["nonRetryable"])
    for cls in classes:
        if cls is not UserError:
            assert ENGINE_ERRORS["errorTypes"][cls.kind] == cls.__name__


def test_error_events_name_the_same_kinds():
    schema = json.loads((SCHEMAS_DIR / "engine-event.schema.json").read_text())
    error_branch = next(branch for branch in schema["oneOf"] if branch["properties"]["event"].get("const") == "error")
    assert set(error_branch["properties"]["kind"]["enum"]) == set(ENGINE_ERRORS["errorKinds"])
