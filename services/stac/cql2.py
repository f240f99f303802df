"""CQL2-JSON filters checked before they reach pgstac: known operators, their number of arguments, and
argument kinds (a condition where a condition is needed, a geometry for a spatial operator, ...).

pgstac turns a filter into SQL; a filter it cannot turn into a valid condition fails inside the database
(syntax errors, type mismatches, GEOS errors) where the cause is hard to read. :func:`check_filter` refuses
such a filter with a message naming the place (``args[1].args[0]``) and the problem. It follows what pgstac
0.10 supports: the CQL2 basic, advanced comparison, spatial, temporal and array operators, ``casei`` /
``accenti`` and arithmetic, and pgstac's spellings of the comparisons (``eq``, ``lt``, ...).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from shapely.geometry import shape

#: the GeoJSON geometry types a spatial operand may have
GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
LOGICAL = frozenset({"and", "or"})
COMPARISON = frozenset({"=", "<>", "!=", "<", "<=", ">", ">=", "eq", "neq", "ne", "lt", "lte", "le", "gt", "gte", "ge"})
TEXT_MATCH = frozenset({"like", "ilike"})
SPATIAL = frozenset(
    {"s_intersects", "s_equals", "s_disjoint", "s_touches", "s_within", "s_overlaps", "s_crosses", "s_contains"}
) | {"intersects"}
TEMPORAL = frozenset(
    {
        "t_before",
        "t_after",
        "t_meets",
        "t_metby",
        "t_overlaps",
        "t_overlappedby",
        "t_starts",
        "t_startedby",
        "t_during",
        "t_contains",
        "t_finishes",
        "t_finishedby",
        "t_equals",
        "t_disjoint",
        "t_intersects",
        "anyinteracts",
    }
)
ARRAY = frozenset({"a_equals", "a_contains", "a_contained_by", "a_overlaps"})
#: operators that make a value, not a condition
FUNCTIONS = frozenset({"casei", "accenti", "upper", "lower"})
ARITHMETIC = frozenset({"+", "-", "*", "/"})
CONDITIONS = LOGICAL | COMPARISON | TEXT_MATCH | SPATIAL | TEMPORAL | ARRAY | {"not", "between", "in", "isnull"}
#: the deepest nesting accepted (pgstac recurses once per level)
MAX_DEPTH = 50


class FilterError(ValueError):
    """A filter pgstac could not run; the message names where in the expression the problem is."""


def check_filter(expression: Any) -> None:
    """Raise :class:`FilterError` unless ``expression`` is a CQL2-JSON condition pgstac can run."""
    _condition(expression, "", 0)


def for_pgstac(expression: Any) -> Any:
    """``expression`` (a checked filter) as pgstac 0.10 runs it: a GeometryCollection operand of a spatial
    operator gets an empty ``coordinates`` member. pgstac's ``spatial_op_query`` takes an operand for a
    geometry only when it has ``coordinates``, then reads it with PostGIS's ``ST_GeomFromGeoJSON``, which
    reads a GeometryCollection's ``geometries`` and ignores the added member."""
    if isinstance(expression, list):
        return [for_pgstac(value) for value in expression]
    if not isinstance(expression, dict) or not isinstance(expression.get("args"), list):
        return expression
    args = [for_pgstac(value) for value in expression["args"]]
    if str(expression.get("op", "")).lower() in SPATIAL and len(args) == 2:
        operand = args[1]
        if isinstance(operand, dict) and operand.get("type") == "GeometryCollection" and "coordinates" not in operand:
            args[1] = {**operand, "coordinates": []}
    return {**expression, "args": args}


def _fail(where: str, problem: str) -> FilterError:
    return FilterError(f"{where}: {problem}" if where else problem)


def _at(where: str, index: int) -> str:
    """The path of argument ``index`` of the operation at ``where`` (``args[1].args[0]``)."""
    return f"{where}.args[{index}]" if where else f"args[{index}]"


def _operation(value: Any, where: str, depth: int) -> tuple[str, list[Any]] | None:
    """``(op, args)`` of an operation object (op lower-cased), None for anything else."""
    if depth > MAX_DEPTH:
        raise _fail(where, f"the expression is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(value, dict) or "op" not in value:
        return None
    op, args = value.get("op"), value.get("args")
    if not isinstance(op, str) or not op:
        raise _fail(where, "'op' must be an operator name")
    if not isinstance(args, list):
        raise _fail(where, f"the {op!r} operator needs 'args', a list of its arguments")
    extra = set(value) - {"op", "args"}
    if extra:
        raise _fail(where, f"unexpected keys {sorted(extra)} beside 'op' and 'args'")
    return op.lower(), args


def _arity(op: str, args: list[Any], where: str, count: int | None = None, at_least: int | None = None) -> None:
    if count is not None and len(args) != count:
        raise _fail(where, f"the {op!r} operator takes {count} argument{'s' if count > 1 else ''}, not {len(args)}")
    if at_least is not None and len(args) < at_least:
        plural = "s" if at_least > 1 else ""
        raise _fail(where, f"the {op!r} operator takes at least {at_least} argument{plural}, not {len(args)}")


def _condition(value: Any, where: str, depth: int) -> None:
    if isinstance(value, bool):
        return
    operation = _operation(value, where, depth)
    if operation is None:
        raise _fail(where, 'must be a condition: a CQL2-JSON operation {"op": ..., "args": [...]} or true/false')
    op, args = operation
    if op in FUNCTIONS or op in ARITHMETIC:
        raise _fail(where, f"the {op!r} operator makes a value, not a condition (compare it with something)")
    if op not in CONDITIONS:
        raise _fail(where, f"unknown operator {op!r}")
    here = [_at(where, i) for i in range(len(args))]
    if op in LOGICAL:
        _arity(op, args, where, at_least=1)  # one argument is allowed (some clients make it)
        for arg, place in zip(args, here, strict=True):
            _condition(arg, place, depth + 1)
    elif op == "not":
        _arity(op, args, where, count=1)
        _condition(args[0], here[0], depth + 1)
    elif op in COMPARISON or op in TEXT_MATCH:
        _arity(op, args, where, count=2)
        for arg, place in zip(args, here, strict=True):
            _scalar(arg, place, depth + 1)
    elif op == "between":
        _arity(op, args, where, count=3)
        for arg, place in zip(args, here, strict=True):
            _scalar(arg, place, depth + 1)
    elif op == "in":
        _arity(op, args, where, count=2)
        _scalar(args[0], here[0], depth + 1)
        if not isinstance(args[1], list) or not args[1]:
            raise _fail(here[1], "the 'in' operator takes a value and a non-empty list of values")
        for index, item in enumerate(args[1]):
            _scalar(item, f"{here[1]}[{index}]", depth + 1)
    elif op == "isnull":
        _arity(op, args, where, count=1)
        _scalar(args[0], here[0], depth + 1)
    elif op in SPATIAL:
        _arity(op, args, where, count=2)
        _property(args[0], here[0], f"the {op!r} operator compares the 'geometry' property (first argument)")
        _geometry(args[1], here[1])
    elif op in TEMPORAL:
        _arity(op, args, where, count=2)
        for arg, place in zip(args, here, strict=True):
            _temporal(arg, place)
    else:  # ARRAY
        _arity(op, args, where, count=2)
        for arg, place in zip(args, here, strict=True):
            if isinstance(arg, list):
                if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in arg):
                    raise _fail(place, "an array operand must be a list of strings or numbers")
            else:
                _property(arg, place, f"the {op!r} operator takes properties or lists")


def _property(value: Any, where: str, need: str) -> str:
    if not isinstance(value, dict) or set(value) != {"property"}:
        raise _fail(where, need)
    name = value["property"]
    if not isinstance(name, str) or not name.strip() or name.strip() == "properties":
        raise _fail(where, "a property needs a name")
    return name


def _is_geometry_property(name: str) -> bool:
    return name.removeprefix("properties.") == "geometry"


def _scalar(value: Any, where: str, depth: int) -> None:
    """A value: a literal, a property, a timestamp/date, or a function or arithmetic of values."""
    if isinstance(value, bool | str):
        return
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _fail(where, "numbers must be finite")
        return
    if isinstance(value, dict) and "property" in value:
        name = _property(value, where, "a property is {'property': name}")
        if _is_geometry_property(name):
            raise _fail(where, f"the {name!r} property can only be used with the spatial operators (s_intersects, ...)")
        return
    if isinstance(value, dict) and ("timestamp" in value or "date" in value):
        _instant(value, where)
        return
    operation = _operation(value, where, depth)
    if operation is None:
        if isinstance(value, dict) and "interval" in value:
            raise _fail(where, "an interval can only be used with the temporal operators (t_intersects, ...)")
        if isinstance(value, dict) and "type" in value:
            raise _fail(where, "a geometry can only be used with the spatial operators (s_intersects, ...)")
        raise _fail(where, "must be a value: a string, a number, a boolean, a property, a timestamp or an operation")
    op, args = operation
    if op in FUNCTIONS:
        _arity(op, args, where, count=1)
        _scalar(args[0], _at(where, 0), depth + 1)
    elif op in ARITHMETIC:
        _arity(op, args, where, count=2)
        for index, arg in enumerate(args):
            if isinstance(arg, str | bool):
                raise _fail(_at(where, index), f"the {op!r} operator takes numbers, not {arg!r}")
            _scalar(arg, _at(where, index), depth + 1)
    elif op in CONDITIONS:
        raise _fail(where, f"the {op!r} operator makes a condition, not a value")
    else:
        raise _fail(where, f"unknown operator {op!r}")


def _instant(value: dict[str, Any], where: str) -> None:
    key = "timestamp" if "timestamp" in value else "date"
    if set(value) != {key} or not isinstance(value[key], str):
        raise _fail(where, f"a {key} is {{{key!r}: text}}")
    _check_instant(value[key], where, date_only=key == "date")


def _check_instant(text: str, where: str, *, date_only: bool) -> None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _fail(where, f"{text!r} is not an RFC 3339 {'date' if date_only else 'date-time'}") from None
    if not date_only and parsed.tzinfo is None:
        raise _fail(where, f"timestamp {text!r} needs a time zone (Z or an offset such as +02:00)")


def _temporal(value: Any, where: str) -> None:
    if isinstance(value, dict) and set(value) == {"property"}:
        _property(value, where, "a property is {'property': name}")
        return
    if isinstance(value, dict) and ("timestamp" in value or "date" in value):
        _instant(value, where)
        return
    if isinstance(value, dict) and set(value) == {"interval"}:
        ends = value["interval"]
        if not isinstance(ends, list) or len(ends) != 2:
            raise _fail(where, "an interval is {'interval': [start, end]}")
        for index, end in enumerate(ends):
            if isinstance(end, str) and end != "..":
                _check_instant(end, f"{where}.interval[{index}]", date_only=len(end) == 10)
            elif isinstance(end, dict) and set(end) == {"property"}:
                _property(end, f"{where}.interval[{index}]", "a property is {'property': name}")
            elif end != "..":
                raise _fail(f"{where}.interval[{index}]", "an interval end is a date, a timestamp, '..' or a property")
        return
    raise _fail(where, "a temporal operand is a property, a timestamp, a date or an interval")


def _geometry(value: Any, where: str) -> None:
    if isinstance(value, list):
        if len(value) not in (4, 6) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
        ):
            raise _fail(where, "a bbox operand is 4 (or 6) finite numbers")
        return
    kind = value.get("type") if isinstance(value, dict) else None
    parts = "geometries" if kind == "GeometryCollection" else "coordinates"
    if kind not in GEOMETRY_TYPES or parts not in value:
        raise _fail(where, "the second argument of a spatial operator must be a GeoJSON geometry or a bbox")
    geometry_problem(value, where)


def geometry_problem(value: dict[str, Any], where: str) -> None:
    """Raise :class:`FilterError` when the GeoJSON geometry cannot be read or is empty.

    An invalid geometry (a self-intersecting "bowtie" polygon, as users draw them) is let through: PostGIS's
    intersection tests handle it, and a GEOS error it may still cause is reported as a refused filter."""
    try:
        parsed = shape(value)
    except Exception as exc:  # shapely raises several kinds for malformed coordinates
        raise _fail(where, f"not a valid GeoJSON geometry: {exc}") from None
    if parsed.is_empty:
        raise _fail(where, "an empty geometry")
