"""Guards every Spark-side writer of the lake goes through: Delta conflict retry, bronze protection.

Used by the stream runtime (``spark_apps/_runtime.py`` retries each micro-batch's writes), the
maintenance operations (``lakehouse.delta.maintenance``) and the replay (``assert_not_bronze``).
Imports only the model (``lakehouse.tables``); pyspark is never imported here, so the guards are
cheap to import and to test.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lakehouse.tables import TableSpec

__all__ = [
    "CONFLICT_EXCEPTIONS",
    "DEFAULT_RETRY",
    "Attempts",
    "BronzeProtectedError",
    "ConflictRetriesExhaustedError",
    "GuardError",
    "RetryPolicy",
    "assert_not_bronze",
    "conflict_name",
    "retry_on_conflict",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Delta's optimistic-concurrency conflicts (io.delta.exceptions.* and their
#: org.apache.spark.sql.delta.* parents): the transaction lost a race and may simply run again.
CONFLICT_EXCEPTIONS = frozenset(
    {
        "ConcurrentAppendException",
        "ConcurrentDeleteReadException",
        "ConcurrentDeleteDeleteException",
        "ConcurrentTransactionException",
        "ConcurrentWriteException",
        "MetadataChangedException",
        "ProtocolChangedException",
        "DeltaConcurrentModificationException",
    }
)
_JAVA_PACKAGES = r"(?:io\.delta\.exceptions|org\.apache\.spark\.sql\.delta)"
_CONFLICT_IN_TRACE = re.compile(rf"^(?:Caused by: )?{_JAVA_PACKAGES}\.({'|'.join(CONFLICT_EXCEPTIONS)}):", re.MULTILINE)


class GuardError(RuntimeError):
    """A write was refused, or could not win its race, by a guard of this module."""


class BronzeProtectedError(GuardError):
    """A delete or overwrite was aimed at bronze, which is never rewritten."""


class ConflictRetriesExhaustedError(GuardError):
    """Every attempt lost a Delta concurrency conflict."""


# -- retrying concurrency conflicts -----------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 15.0

    def delay(self, failed_attempts: int) -> float:
        """Exponential backoff with jitter (half to full of the capped exponential delay)."""
        capped = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))
        return float(capped * random.SystemRandom().uniform(0.5, 1.0))


DEFAULT_RETRY = RetryPolicy()


def _java_class_names(throwable: Any) -> Iterator[str]:
    """Simple class names of a Java throwable, its superclasses, and the same for its causes."""
    seen = 0
    while throwable is not None and seen < 16:
        seen += 1
        try:
            cls = throwable.getClass()
            while cls is not None:
                yield str(cls.getSimpleName())
                cls = cls.getSuperclass()
            throwable = throwable.getCause()
        except Exception:  # not a py4j JavaObject after all (e.g. Spark Connect): nothing more to read
            return


def conflict_name(exc: BaseException) -> str | None:
    """The Delta concurrency-conflict class ``exc`` stands for, or None if it is something else.

    pyspark 4.2 surfaces Delta's conflicts in three shapes, all checked here: delta-spark's own
    Python classes (``delta.exceptions.ConcurrentAppendException``, named after the Java class,
    without the Java object); a CapturedException or Py4JJavaError carrying the Java throwable
    (``_origin`` / ``java_exception``; its class, superclasses and causes are checked); and the
    JVM stack trace text (``io.delta.exceptions.X: ...`` or ``Caused by: ...``).
    """
    pending: list[BaseException] = [exc]
    visited: set[int] = set()
    while pending:
        e = pending.pop()
        if id(e) in visited:
            continue
        visited.add(id(e))
        for cls in type(e).__mro__:
            if cls.__name__ in CONFLICT_EXCEPTIONS:
                return cls.__name__
        for attr in ("_origin", "java_exception"):
            for name in _java_class_names(getattr(e, attr, None)):
                if name in CONFLICT_EXCEPTIONS:
                    return name
        trace = getattr(e, "_stackTrace", None)
        if isinstance(trace, str) and (m := _CONFLICT_IN_TRACE.search(trace)):
            return m.group(1)
        for nxt in (getattr(e, "_cause", None), e.__cause__):  # not __context__: an error *while* handling one
            if isinstance(nxt, BaseException):
                pending.append(nxt)
    return None


@dataclass
class Attempts:
    """How many times :func:`retry_on_conflict` ran its function, and the conflicts it lost."""

    count: int = 0
    conflicts: list[str] = field(default_factory=list)


def retry_on_conflict(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    attempts: Attempts | None = None,
) -> T:
    """Run ``fn``; when it loses a Delta concurrency conflict, back off and run it again.

    At most ``policy.max_attempts`` runs; then :class:`ConflictRetriesExhaustedError` (from the
    last conflict). Any other exception propagates at once, unchanged. ``attempts`` (optional)
    records how many runs it took and which conflicts were lost.
    """
    record = attempts if attempts is not None else Attempts()
    while True:
        record.count += 1
        try:
            return fn()
        except Exception as exc:
            name = conflict_name(exc)
            if name is None:
                raise
            record.conflicts.append(name)
            if record.count >= policy.max_attempts:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ConflictRetriesExhaustedError(
                    f"{what}: gave up after {record.count} attempts, each lost a Delta concurrency conflict "
                    f"({', '.join(record.conflicts)}); last: {first_line}"
                ) from exc
            pause = policy.delay(record.count)
            log.warning("%s: %s on attempt %d, retrying in %.1fs", what, name, record.count, pause)
            sleep(pause)


# -- guard ------------------------------------------------------------------------------
def assert_not_bronze(target: TableSpec | str | Path, *, operation: str = "delete from or overwrite") -> None:
    """Raise :class:`BronzeProtectedError` when ``target`` is bronze, part of it, or a lake holding it.

    ``target`` is a spec, a full name (``"bronze.payments"``) or a path (local or URI). Call it
    before any delete or overwrite (pruning, replay): bronze is the exactly-once record of what
    Kafka delivered, and everything else can be rebuilt from it, but not the other way round.
    Delta refuses too (``delta.appendOnly=true``); this refuses earlier, also for overwrites
    and file-level deletes Delta cannot see.
    """
    if isinstance(target, TableSpec):
        bronze, shown = target.layer == "bronze", f"{target.full_name} ({target.relative_path})"
    else:
        text = str(target)
        parts = [p for p in re.split(r"[/\\]", text.split("://", 1)[-1]) if p]
        local = re.sub(r"^file:(//)?", "", text)
        bronze = (
            text.split(".", 1)[0].lower() == "bronze"
            or any(p.lower() == "bronze" for p in parts)
            or ("://" not in local and (Path(local) / "bronze").is_dir())  # a lake root: holds bronze
        )
        shown = text
    if bronze:
        raise BronzeProtectedError(
            f"refusing to {operation} {shown}: bronze is the raw, exactly-once record of what Kafka delivered "
            "and is never deleted from or overwritten (its tables are delta.appendOnly). "
            "Rebuild or repair silver and gold from it instead."
        )
