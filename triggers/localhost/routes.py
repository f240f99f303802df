"""Azure Functions route templates → Starlette paths, in Azure's order of precedence.

Azure (ASP.NET routing) supports ``{name}``, ``{name:constraint}``, optional
``{name?}`` and catch-all ``{*name}``. Literal segments win over parameters,
and catch-alls come last, whatever the registration order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.convertors import Convertor, register_url_convertor


class RouteError(ValueError):
    """A route template the Functions host would not accept (or the local host cannot serve)."""


_RESERVED_PREFIXES = ("admin", "runtime")  # the Functions host keeps these for itself
_PARAM = re.compile(r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<constraint>[^}?]+))?(?P<opt>\?)?\}$")
_RANK_LITERAL, _RANK_CONSTRAINED, _RANK_PARAM, _RANK_CATCH_ALL = 0, 1, 2, 3


@dataclass(frozen=True)
class RoutePattern:
    """One Starlette path for one Azure route template."""

    template: str
    path: str  # Starlette path, starting with "/api/"
    rank: tuple[int, ...]


class _Pattern(Convertor[str]):
    """A route constraint as a Starlette convertor; the value stays a string, as Azure passes it."""

    regex = ""

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


def _convertor(name: str, regex: str) -> str:
    convertor = type(f"{name}_convertor", (_Pattern,), {"regex": regex})()
    register_url_convertor(f"az_{name}", convertor)
    return f"az_{name}"


_NUMBER = _convertor("int", r"-?[0-9]+")
_CONSTRAINTS = {
    "int": _NUMBER,
    "long": _NUMBER,
    "double": _convertor("double", r"-?[0-9]+(?:\.[0-9]+)?"),
    "float": _convertor("float", r"-?[0-9]+(?:\.[0-9]+)?"),
    "decimal": _convertor("decimal", r"-?[0-9]+(?:\.[0-9]+)?"),
    "bool": _convertor("bool", r"(?i:true|false)"),
    "alpha": _convertor("alpha", r"[A-Za-z]+"),
    "guid": _convertor("guid", r"\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?"),
}


def _segment(segment: str) -> tuple[str, int, bool]:
    """(starlette segment, precedence rank, optional?) for one template segment."""
    match = _PARAM.match(segment)
    if match is None:
        if "{" in segment or "}" in segment:
            raise RouteError(f"unsupported route segment {segment!r}: mix of literal and parameter")
        return segment, _RANK_LITERAL, False
    name, constraint = match.group("name"), (match.group("constraint") or "").lower()
    if match.group("star"):
        return "{" + name + ":path}", _RANK_CATCH_ALL, False
    if not constraint:
        return "{" + name + "}", _RANK_PARAM, bool(match.group("opt"))
    if constraint not in _CONSTRAINTS:
        supported = ", ".join(sorted(_CONSTRAINTS))
        raise RouteError(f"route constraint {constraint!r} in {segment!r} is not supported here (use {supported})")
    return "{" + name + ":" + _CONSTRAINTS[constraint] + "}", _RANK_CONSTRAINED, bool(match.group("opt"))


def to_patterns(template: str, prefix: str = "api") -> list[RoutePattern]:
    """The Starlette paths serving ``template``; an optional last parameter gives two paths."""
    segments = [s for s in template.strip("/").split("/") if s]
    if template.strip("/").lower().startswith(_RESERVED_PREFIXES):
        raise RouteError(f"route {template!r}: routes starting with 'admin' or 'runtime' are reserved by the host")
    parts: list[str] = []
    ranks: list[int] = []
    patterns: list[RoutePattern] = []
    for i, raw in enumerate(segments):
        seg, rank, optional = _segment(raw)
        if optional:
            if i != len(segments) - 1:
                raise RouteError(f"route {template!r}: only the last parameter may be optional")
            patterns.append(RoutePattern(template, _join(prefix, parts), tuple(ranks)))
        if rank == _RANK_CATCH_ALL:
            # Starlette's path convertor also matches the empty string only without the slash before it.
            patterns.append(RoutePattern(template, _join(prefix, parts), (*ranks, rank)))
        parts.append(seg)
        ranks.append(rank)
    patterns.append(RoutePattern(template, _join(prefix, parts), tuple(ranks)))
    return patterns


def _join(prefix: str, parts: list[str]) -> str:
    return "/" + "/".join([prefix, *parts]) if parts else f"/{prefix}"


def precedence(pattern: RoutePattern) -> tuple[tuple[int, ...], int]:
    """Sort key: segment ranks compared left to right, then longer paths first."""
    return (*pattern.rank, _RANK_CATCH_ALL + 1), -len(pattern.rank)
