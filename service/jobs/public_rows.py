"""Pages of jobs as `JobPublic`'s JSON, built from columns: no mapped object, no model per row.

A list page is read far more often than anything else here, and turning 50 ORM rows into 50
validated `JobPublic` models cost more than the query. The columns selected are the model's
own fields, named alike on `Job` and in the model's order, so the JSON written from them is
byte for byte what the model would write (tests/integration/test_job_list_rows.py compares).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select
from sqlmodel import Session, select

from service.db.tables import Job
from service.jobs import service as jobs
from service.jobs.schemas import AttemptPublic, JobPublic

# Every field but `attempts` (a list read from JobAttempt) is the Job column of the same name.
FIELDS: tuple[str, ...] = tuple(JobPublic.model_fields)
_ATTEMPTS = FIELDS.index("attempts")
_COLUMNS = [getattr(Job, name) for name in FIELDS if name != "attempts"]
_ATTEMPT = FIELDS.index("attempt")  # before `attempts`: the same place in a row
if FIELDS[0] != "id":  # jobs.list_job_rows reads a row's key as its first column
    raise RuntimeError("JobPublic's first field must be the job's id")
# Built once: composing a select of 27 columns cost a tenth of a page's CPU.
SELECT: Select[Any] = select(*_COLUMNS)


def items(session: Session, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """`rows` (of SELECT) as JobPublic's fields, in its order, each value of the field's type."""
    retried = [row[0] for row in rows if row[_ATTEMPT] > 1]
    earlier = jobs.attempts_of(session, job_ids=retried) if retried else {}
    out = []
    for row in rows:
        attempts = [AttemptPublic.model_validate(a, from_attributes=True) for a in earlier.get(row[0], ())]
        out.append(dict(zip(FIELDS, (*row[:_ATTEMPTS], attempts, *row[_ATTEMPTS:]), strict=True)))
    return out
