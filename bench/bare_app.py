"""The ceiling of our stack: FastAPI + SQLModel on SQLite (WAL), one read by key, one insert.

Run: `python -m bench.bare_app --db PATH --port N` (one uvicorn worker, like runyard).
"""

# No `from __future__ import annotations`: FastAPI must see the local SessionDep alias itself.
import argparse
import os
from collections.abc import Iterator
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine


class Item(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=255)
    status: str = Field(max_length=16)


class ItemCreate(BaseModel):
    name: str
    status: str = "queued"


class ItemPublic(BaseModel):
    id: str
    name: str
    status: str


def build(db_path: str) -> FastAPI:
    engine = create_engine(f"sqlite:///{db_path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    SQLModel.metadata.create_all(engine)

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    SessionDep = Annotated[Session, Depends(session)]
    app = FastAPI()

    @app.get("/items/{item_id}")
    def read_item(item_id: str, s: SessionDep) -> ItemPublic:
        item = s.get(Item, item_id)
        if item is None:
            raise HTTPException(404)
        return ItemPublic.model_validate(item, from_attributes=True)

    @app.post("/items", status_code=201)
    def create_item(spec: ItemCreate, s: SessionDep) -> ItemPublic:
        item = Item(id=os.urandom(13).hex(), name=spec.name, status=spec.status)
        s.add(item)
        s.commit()
        return ItemPublic(id=item.id, name=spec.name, status=spec.status)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.db), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
