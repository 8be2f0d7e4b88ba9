from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from core.index.doc_rules import MAX_ID_CHARS
from core.index.doc_store import Document
from service.deps import EngineDep, WriterDep
from service.schemas import DocumentOut, UpsertRequest, WriteResponse
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["documents"], route_class=StrictJSONRoute)
# ``:path``: an id may hold "/" (sent as %2F, which the server decodes before routing); without
# it such an id was stored by PUT but could never be read or deleted.
DocIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS, description="The document's external id, percent-encoded."),
]
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "read-only key or read-only service"},
    413: {"description": "too many documents, or a text or metadata too large"},
    422: {"description": "invalid request"},
    503: {"description": "the index is busy with another writer for longer than the write timeout"},
}


@router.put(
    "/documents",
    response_model=WriteResponse,
    summary="Upsert documents; durable (published as a new index generation) before the answer",
    responses=_WRITE_ERRORS,
)
async def upsert(body: UpsertRequest, engine: WriterDep) -> WriteResponse:
    docs = [Document(d.id, d.text, d.metadata) for d in body.documents]
    engine.check_documents(docs)
    result = await engine.upsert(docs, [d.vector for d in body.documents])
    return WriteResponse(generation=result.generation, upserted=result.upserted)


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    summary="Read one document",
    responses={404: {"description": "no such document"}},
)
async def get_document(doc_id: DocIdPath, engine: EngineDep) -> DocumentOut:
    doc = await engine.get_document(doc_id)
    return DocumentOut(id=doc.id, text=doc.text, metadata=doc.metadata)


@router.delete(
    "/documents/{doc_id:path}",
    response_model=WriteResponse,
    summary="Delete one document; durable before the answer",
    responses={404: {"description": "no such document"}, **_WRITE_ERRORS},
)
async def delete_document(doc_id: DocIdPath, engine: WriterDep) -> WriteResponse:
    result = await engine.delete(doc_id)
    return WriteResponse(generation=result.generation, deleted=result.deleted)
