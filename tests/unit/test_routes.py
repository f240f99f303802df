from __future__ import annotations

import pytest

from triggers.localhost.routes import precedence, to_patterns


def paths(template: str) -> list[str]:
    return [p.path for p in to_patterns(template)]


def test_literal_and_parameter_segments() -> None:
    assert paths("jobs/status/{job_id}") == ["/api/jobs/status/{job_id}"]
    assert paths("/health/") == ["/api/health"]


def test_int_constraint_and_catch_all() -> None:
    assert paths("items/{n:int}") == ["/api/items/{n:int}"]
    assert paths("files/{*path}") == ["/api/files", "/api/files/{path:path}"]


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
