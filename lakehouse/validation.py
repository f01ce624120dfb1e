"""JSON Schema -> Spark column expressions: the silver layer's validator, generated from the contracts.

The contract files are the only source of the rules: ``compile_schema`` walks a schema's
``required`` list and ``properties`` (type, enum, minLength/maxLength, pattern,
minimum/maximum and their exclusive forms, ``format: date-time``) and builds native Spark
expressions, so validation runs in the JVM at full speed instead of a Python UDF.

Types are checked on the JSON token itself (``parse_json`` -> VARIANT -> ``schema_of_variant``),
so ``"amount": "12.5"`` is a string and fails ``type: number`` exactly as jsonschema says,
where a typed ``from_json`` would silently coerce it.

Beyond JSON Schema, the contract adds one rule: an ``event_time`` more than one day in
the future is invalid (``now`` is a column, so tests can pin it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

#: RFC 3339 date-time with a zone ('Z' or +hh:mm; 't' and 'z' may be lower case); fractions up to nanoseconds.
DATE_TIME_RE = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\z"
DATE_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX"
FUTURE_TOLERANCE = "INTERVAL 1 DAY"

_INTEGRAL = ("BIGINT", "INT", "SMALLINT", "TINYINT")
#: Closes the array a record is wrapped in to detect trailing content (see CompiledSchema.document).
_SENTINEL = "\x00lakehouse:end-of-record"
_SPARK_TYPE = {"string": "string", "number": "double", "integer": "bigint", "boolean": "boolean"}


@dataclass(frozen=True)
class Field:
    """One property of a schema, as silver stores it."""

    name: str
    json_types: tuple[str, ...]  # e.g. ("string", "null")
    spark_type: str  # string | double | bigint | boolean | timestamp
    required: bool
    spec: dict[str, Any]

    @property
    def nullable_in_json(self) -> bool:
        return "null" in self.json_types


def _json_types(spec: dict[str, Any]) -> tuple[str, ...]:
    if "type" in spec:
        t = spec["type"]
        return tuple(t) if isinstance(t, list) else (t,)
    if "enum" in spec:
        kinds = set()
        for v in spec["enum"]:
            if v is None:
                kinds.add("null")
            elif isinstance(v, bool):
                kinds.add("boolean")
            elif isinstance(v, int | float):
                kinds.add("number")
            else:
                kinds.add("string")
        return tuple(sorted(kinds))
    raise ValueError(f"property without type or enum: {spec}")


def fields(schema: dict[str, Any]) -> list[Field]:
    """The schema's properties in declaration order, with the Spark type silver stores."""
    required = set(schema.get("required", []))
    out = []
    for name, spec in schema["properties"].items():
        types = _json_types(spec)
        non_null = [t for t in types if t != "null"]
        if len(non_null) != 1:
            raise ValueError(f"{name}: silver needs exactly one non-null type, schema allows {types}")
        spark_type = "timestamp" if spec.get("format") == "date-time" else _SPARK_TYPE[non_null[0]]
        out.append(Field(name, types, spark_type, name in required, spec))
    return out


def _type_ok(kind: Column, json_type: str, number: Column) -> Column:
    if json_type == "string":
        return kind == "STRING"
    if json_type == "boolean":
        return kind == "BOOLEAN"
    if json_type == "null":
        return kind == "VOID"
    numeric = kind.isin(*_INTEGRAL, "DOUBLE", "FLOAT") | kind.startswith("DECIMAL")
    if json_type == "number":
        return numeric
    if json_type == "integer":  # JSON Schema: 12.0 is an integer too
        # pmod, not floor(): floor returns BIGINT and saturates beyond +-2^63.
        return kind.isin(*_INTEGRAL) | (numeric & (F.pmod(number, F.lit(1.0)) == 0))
    if json_type == "object":
        return kind.startswith("OBJECT")
    if json_type == "array":
        return kind.startswith("ARRAY")
    raise ValueError(f"unsupported JSON type {json_type}")


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern for Java's regex engine.

    In ECMA-262 a final ``$`` (no multiline flag) matches only at the very end; Java's (and
    Python's) ``$`` also matches before a final line break, so "DE\\n" would pass ``^[A-Z]{2}$``.
    ``\\z`` is Java's end of input.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\z"
    return pattern


def _lit_list(values: list[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class _Parts:
    """One field of a record, looked at four ways."""

    raw: Column  # the field as a VARIANT; SQL NULL when the key is absent
    kind: Column  # its JSON token type: STRING, BIGINT, DECIMAL(p,s), DOUBLE, BOOLEAN, VOID, OBJECT<..>, ARRAY<..>
    text: Column  # as text
    number: Column  # as a double (NULL unless numeric)


def _parts_of(raw: Column) -> _Parts:
    return _Parts(
        raw=raw,
        kind=F.schema_of_variant(raw),
        text=F.try_variant_get(raw, "$", "string"),
        number=F.try_variant_get(raw, "$", "double"),
    )


def _field_error(f: Field, p: _Parts, now: Column) -> Column:
    """Null when the field is valid, else 'name: reason'."""
    raw, kind, text, number = p.raw, p.kind, p.text, p.number
    n = f.name
    allowed = " or ".join(f.json_types)
    type_ok = F.lit(False)
    for t in f.json_types:
        type_ok = type_ok | _type_ok(kind, t, number)
    got = F.lower(F.regexp_replace(kind, r"[<(].*$", ""))
    got_name = (
        F.when(got.isin("bigint", "int", "smallint", "tinyint", "double", "float", "decimal"), "number")
        .when(got == "void", "null")
        .otherwise(got)
    )

    checks: list[tuple[Column, Column | str]] = []
    spec = f.spec
    if f.spark_type == "bigint":
        # Silver stores integers as BIGINT: a larger one would be typed to NULL and lost.
        checks.append(
            (
                F.try_variant_get(raw, "$", "bigint").isNull(),
                F.format_string(f"{n}: %s does not fit a 64-bit integer", text),
            )
        )
    if "enum" in spec:
        members = [v for v in spec["enum"] if v is not None]
        strings = [v for v in members if isinstance(v, str)]
        numbers = [float(v) for v in members if isinstance(v, int | float) and not isinstance(v, bool)]
        booleans = [str(v).lower() for v in members if isinstance(v, bool)]
        is_member = (kind == "STRING") & text.isin(*strings) if strings else F.lit(False)
        if numbers:  # numbers compare by value: 1, 1.0 and 1e0 are the same member
            is_member = is_member | (_type_ok(kind, "number", number) & number.isin(*numbers))
        if booleans:
            is_member = is_member | ((kind == "BOOLEAN") & text.isin(*booleans))
        checks.append(
            (
                ~is_member,
                F.format_string(f"{n}: '%s' is not one of {_lit_list(spec['enum'])}", text),
            )
        )
    if "minLength" in spec:
        checks.append(
            (
                F.char_length(text) < spec["minLength"],
                F.format_string(f"{n}: shorter than {spec['minLength']} characters (%d)", F.char_length(text)),
            )
        )
    if "maxLength" in spec:
        checks.append(
            (
                F.char_length(text) > spec["maxLength"],
                F.format_string(f"{n}: longer than {spec['maxLength']} characters (%d)", F.char_length(text)),
            )
        )
    if "pattern" in spec:
        checks.append(
            (
                ~text.rlike(ecma_pattern(spec["pattern"])),
                F.format_string(f"{n}: '%s' does not match {spec['pattern']}", F.substring(text, 1, 80)),
            )
        )
    bounds: list[tuple[str, Callable[[Column, Column], Column], str]] = [
        ("minimum", lambda v, b: v < b, "is below the minimum"),
        ("exclusiveMinimum", lambda v, b: v <= b, "is not above the exclusive minimum"),
        ("maximum", lambda v, b: v > b, "is above the maximum"),
        ("exclusiveMaximum", lambda v, b: v >= b, "is not below the exclusive maximum"),
    ]
    for key, broken, words in bounds:
        if key in spec:
            checks.append(
                (broken(number, F.lit(float(spec[key]))), F.format_string(f"{n}: %s {words} {_num(spec[key])}", text))
            )
    if spec.get("format") == "date-time":
        ts = parse_date_time(text)
        checks.append((ts.isNull(), F.format_string(f"{n}: '%s' is not an ISO-8601 date-time with a zone", text)))
        checks.append((ts > now + F.expr(FUTURE_TOLERANCE), F.lit(f"{n}: more than 1 day in the future")))

    is_null = F.is_variant_null(raw)
    expr = (
        F.when(raw.isNull(), F.lit(f"{n}: required field missing") if f.required else F.lit(None))
        .when(~type_ok, F.concat(F.lit(f"{n}: expected {allowed}, got "), got_name))
        .when(is_null, F.lit(None))
    )
    for failed, message in checks:
        expr = expr.when(failed, message if isinstance(message, Column) else F.lit(message))
    return expr


def parse_date_time(text: Column) -> Column:
    """RFC 3339 text -> UTC timestamp, or NULL when it is not one (no exceptions under ANSI mode)."""
    return F.when(text.rlike(DATE_TIME_RE), F.try_to_timestamp(F.upper(text), F.lit(DATE_TIME_FORMAT)))


@dataclass(frozen=True)
class CompiledSchema:
    fields: list[Field]
    known: tuple[str, ...]

    def document(self, value: Column) -> Column:
        """The record as a VARIANT, or NULL when it is not exactly one JSON value.

        Spark's JSON functions stop after the first value and ignore what follows, so
        '{...} x' would pass. Parsing ``[<record>, SENTINEL]`` instead makes any trailing
        content a syntax error (or shifts the sentinel out of place), while a record with
        nothing after it yields a two-element array whose first element is the record.
        """
        wrapped = F.try_parse_json(F.concat(F.lit("["), value, F.lit(f", {json.dumps(_SENTINEL)}]")))
        whole = (F.try_variant_get(wrapped, "$[1]", "string") == _SENTINEL) & F.try_variant_get(
            wrapped, "$[2]", "variant"
        ).isNull()
        return F.when(whole, F.variant_get(wrapped, "$[0]", "variant"))

    def error(self, value: Column, now: Column | None = None) -> Column:
        """'field: reason; field: reason' for an invalid record, NULL for a valid one.

        One self-contained expression, handy for a quick check; a pipeline should use
        ``annotate``, which computes each field's parts once (this repeats them).
        """
        doc = self.document(value)
        parts = [_parts_of(F.variant_get(doc, f"$.{f.name}", "variant")) for f in self.fields]
        return self._error_from(value, doc, parts, now)

    def annotate(self, df: DataFrame, value_col: str, now: Column | None = None) -> DataFrame:
        """``df`` plus ``_error``, the schema's typed fields and ``_extra``, computed in stages.

        Each field is extracted once into a column and every check reads those columns.
        As one nested expression the checks would repeat the extraction dozens of times and
        outgrow the JVM's 64 KB method limit, which makes Spark fall back to interpreting
        the plan: about 20 times slower. Spark does not collapse the stages back together
        because each stage's columns are read more than once.
        """
        keep = [F.col(c) for c in df.columns]
        staged = df.withColumn("__doc", self.document(F.col(value_col)))
        staged = staged.withColumns(
            {f"__r{i}": F.variant_get(F.col("__doc"), f"$.{f.name}", "variant") for i, f in enumerate(self.fields)}
        )
        # Stage only what a field's checks read on every row: its kind always, its text when it
        # is a string, its number when it is numeric. Anything else (the text of a number in an
        # error message) stays inline, where it is evaluated only on the failing branch.
        stage: dict[str, Column] = {}
        cols: list[_Parts] = []
        for i, f in enumerate(self.fields):
            inline = _parts_of(F.col(f"__r{i}"))
            stage[f"__k{i}"] = inline.kind
            text, number = inline.text, inline.number
            if f.spark_type in ("string", "timestamp"):
                stage[f"__t{i}"] = inline.text
                text = F.col(f"__t{i}")
            if f.spark_type in ("double", "bigint"):
                stage[f"__n{i}"] = inline.number
                number = F.col(f"__n{i}")
            cols.append(_Parts(F.col(f"__r{i}"), F.col(f"__k{i}"), text, number))
        staged = staged.withColumns(stage)
        typed = []
        for f, p in zip(self.fields, cols, strict=True):
            if f.spark_type == "timestamp":
                typed.append(parse_date_time(p.text).alias(f.name))
            else:
                typed.append(F.try_variant_get(p.raw, "$", f.spark_type).alias(f.name))
        return staged.select(
            *keep,
            self._error_from(F.col(value_col), F.col("__doc"), cols, now).alias("_error"),
            *typed,
            self._extra_of(F.col("__doc")).alias("_extra"),
        )

    def _error_from(self, value: Column, doc: Column, parts: list[_Parts], now: Column | None) -> Column:
        now = now if now is not None else F.current_timestamp()
        doc_kind = F.schema_of_variant(doc)
        per_field = F.concat_ws(
            "; ", F.array(*[_field_error(f, p, now) for f, p in zip(self.fields, parts, strict=True)])
        )
        return (
            F.when(value.isNull(), F.lit("value: empty record"))
            .when(doc.isNull(), F.lit("value: not valid JSON"))
            .when(
                ~doc_kind.startswith("OBJECT"),
                F.concat(
                    F.lit("value: not a JSON object (got "),
                    F.lower(F.regexp_replace(doc_kind, r"<.*$", "")),
                    F.lit(")"),
                ),
            )
            .when(per_field != "", per_field)
        )

    def typed(self, value: Column) -> list[Column]:
        """The schema's properties as typed columns (meaningful for valid records)."""
        doc = self.document(value)
        cols = []
        for f in self.fields:
            raw = F.variant_get(doc, f"$.{f.name}", "variant")
            if f.spark_type == "timestamp":
                col = parse_date_time(F.try_variant_get(raw, "$", "string"))
            else:
                col = F.try_variant_get(raw, "$", f.spark_type)
            cols.append(col.alias(f.name))
        return cols

    def extra(self, value: Column) -> Column:
        """Unknown top-level fields as a JSON object string, NULL when there are none."""
        return self._extra_of(self.document(value))

    def _extra_of(self, doc: Column) -> Column:
        as_map = F.try_variant_get(doc, "$", "map<string,variant>")
        known = F.array(*[F.lit(k) for k in self.known])
        rest = F.map_filter(as_map, lambda k, _v: ~F.array_contains(known, k))
        return F.when(F.cardinality(rest) > 0, F.to_json(rest))


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    fs = fields(schema)
    return CompiledSchema(fields=fs, known=tuple(f.name for f in fs))
