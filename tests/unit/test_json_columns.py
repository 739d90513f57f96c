"""JSON columns are read by pydantic's parser (issue 17) and give exactly what json.loads gives."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table, select

from service.db.engine import Database, read_json


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300)
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD800),
                                       rng.randrange(0xE000, 0x110000), rng.randrange(0, 32)]))
                       for _ in range(rng.randrange(6)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.choice([0.1, -0.0, 5e-324, 1.7976931348623157e308])
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{rng.randrange(9)}\u00fc": _random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def test_random_documents_read_as_json_loads_reads_them() -> None:
    rng = random.Random(17)
    for _ in range(3000):
        stored = json.dumps(_random_value(rng))  # SQLAlchemy's serializer: json.dumps
        assert repr(read_json(stored)) == repr(json.loads(stored)), stored


@pytest.mark.parametrize("stored", ['{"a": 1, "a": 2}', "NaN", "-Infinity", "12345678901234567890123", '"\\ud800"',
                                    '["\\udc00x", {"k": "\\ud83d"}]'])
def test_edge_cases_read_as_json_loads_reads_them(stored: str) -> None:
    got, want = read_json(stored), json.loads(stored)
    assert repr(got) == repr(want) or (isinstance(got, float) and math.isnan(got) and math.isnan(want))


def test_malformed_text_is_refused_as_before() -> None:
    with pytest.raises(json.JSONDecodeError):
        read_json('{"a": ')


def test_the_engine_reads_json_columns_with_it(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'j.db'}")
    assert db.engine.dialect._json_deserializer is read_json  # type: ignore[attr-defined]
    table = Table("doc", MetaData(), Column("id", Integer, primary_key=True), Column("value", JSON))
    value = {"k\u00fc": ["--lr", 0.5, 2**70, None, {"dataset": "digits"}]}
    table.create(db.engine)
    with db.engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "value": value}])
    with db.engine.connect() as conn:
        assert conn.execute(select(table.c.value)).scalar_one() == value
    db.dispose()
