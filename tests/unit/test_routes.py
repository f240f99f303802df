from __future__ import annotations

import pytest

from triggers.localhost.routes import precedence, to_patterns


def paths(template: str) -> list[str]:
    return [p.path for p in to_patterns(template)]


def test_literal_and_parameter_segments() -> None:
    assert paths("jobs/status/{job_id}") == ["/api/jobs/status/{job_id}"]
    assert paths("/health/") == ["/api/health"]


def test_constraints_and_catch_all() -> None:
    assert paths("items/{n:int}") == ["/api/items/{n:az_int}"]
    assert paths("items/{id:guid}") == ["/api/items/{id:az_guid}"]
    assert paths("files/{*path}") == ["/api/files", "/api/files/{path:path}"]


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        ("int", ["0", "-12", "42"], ["4.2", "x", ""]),
        ("alpha", ["abc", "ABC"], ["ab1", "a-b"]),
        ("bool", ["true", "False"], ["yes", "1"]),
        ("guid", ["0f8fad5b-d9cb-469f-a165-70867728950e", "{0F8FAD5B-D9CB-469F-A165-70867728950E}"], ["0f8fad5b"]),
        ("double", ["1", "-1.5"], ["1e3", "x"]),
    ],
)
def test_constraint_patterns(constraint: str, good: list[str], bad: list[str]) -> None:
    import re

    from starlette.convertors import CONVERTOR_TYPES

    name = to_patterns(f"x/{{v:{constraint}}}")[0].path.split(":")[1].rstrip("}")
    regex = re.compile(CONVERTOR_TYPES[name].regex)
    assert all(regex.fullmatch(v) for v in good)
    assert not any(regex.fullmatch(v) for v in bad)


def test_unsupported_constraint_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="route constraint 'regex"):
        to_patterns("x/{v:regex(^a$)}")


@pytest.mark.parametrize("template", ["admin/reset", "runtime/x", "Admin/thing", "administration/x", "admin_purge"])
def test_reserved_prefixes_are_refused_as_azure_does(template: str) -> None:
    with pytest.raises(ValueError, match="reserved by the host"):
        to_patterns(template)


def test_optional_last_parameter_gives_two_paths() -> None:
    assert paths("containers/{name?}") == ["/api/containers", "/api/containers/{name}"]


def test_optional_in_the_middle_is_refused() -> None:
    with pytest.raises(ValueError, match="only the last parameter"):
        to_patterns("a/{x?}/b")


def test_mixed_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="mix of literal and parameter"):
        to_patterns("a/file-{id}")


def test_precedence_literals_first_catch_all_last() -> None:
    templates = ["{*path}", "jobs/{job_id}/events", "jobs/status/{job_id}", "jobs/{job_id}", "health"]
    ordered = sorted((p for t in templates for p in to_patterns(t)), key=precedence)
    order = [p.template for p in ordered]
    assert order.index("jobs/status/{job_id}") < order.index("jobs/{job_id}/events")
    assert order[-1] == "{*path}" and order[-2] == "{*path}"
