"""The silver validator as Spark columns: the program of ``lakehouse.validation``, run by Java.

``compile_schema(schema)`` gives a :class:`CompiledSchema` whose methods call
``lakehouse.spark.Validator`` (Java, ``spark_apps/jvm``), registered once per Spark session under
a name derived from the program, so two schemas never share a function.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.validation import Field, fields, program


@dataclass(frozen=True)
class CompiledSchema:
    """A schema's validator as Spark columns: ``lakehouse.spark.Validator``, registered per session."""

    fields: list[Field]
    program: str

    @property
    def function_name(self) -> str:
        return "lakehouse_validate_" + hashlib.sha256(self.program.encode()).hexdigest()[:16]

    def _validated(self, value: Column, now: Column | None, spark: SparkSession | None = None) -> Column:
        """``struct<_error, <typed fields>, _extra>`` of the record in ``value``."""
        session = spark or SparkSession.getActiveSession()
        if session is None:
            raise RuntimeError("validating records needs an active Spark session")
        session._jvm.lakehouse.spark.Validator.register(  # type: ignore[union-attr]
            session._jsparkSession, self.function_name, self.program
        )
        now_us = F.unix_micros(now if now is not None else F.current_timestamp())
        # The bytes as Kafka delivered them (a string column holds them unchecked): the validator
        # decodes strictly, so bytes that are not UTF-8 make the record invalid, never silently replaced.
        return F.call_function(self.function_name, value.cast("binary"), now_us)

    def error(self, value: Column, now: Column | None = None) -> Column:
        """'field: reason; field: reason' for an invalid record, NULL for a valid one."""
        return self._validated(value, now).getField("_error")

    def annotate(self, df: DataFrame, value_col: str, now: Column | None = None) -> DataFrame:
        """``df`` plus ``_error``, the schema's typed fields and ``_extra``: one call per record."""
        v = "__validated"
        out = df.withColumn(v, self._validated(F.col(value_col), now, df.sparkSession))
        return out.select(
            *[F.col(c) for c in df.columns],
            F.col(v).getField("_error").alias("_error"),
            *[F.col(v).getField(f.name).alias(f.name) for f in self.fields],
            F.col(v).getField("_extra").alias("_extra"),
        )

    def typed(self, value: Column) -> list[Column]:
        """The schema's properties as typed columns (meaningful for valid records)."""
        v = self._validated(value, None)
        return [v.getField(f.name).alias(f.name) for f in self.fields]

    def extra(self, value: Column) -> Column:
        """Unknown top-level fields as a JSON object string, NULL when there are none."""
        return self._validated(value, None).getField("_extra")


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    fs = fields(schema)
    return CompiledSchema(fields=fs, program=program(fs))
