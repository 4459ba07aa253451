"""``/graphs``: create, list and read graph definitions, and render them as Mermaid."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import PlainTextResponse, Response

from functions.api.deps import CurrentCaller, Service, visible_graph
from functions.api.errors import error_responses
from functions.api.examples import EXAMPLE_GRAPH_ID, GRAPH_EXAMPLES
from functions.api.json_body import JsonRulesRoute
from functions.api.models import GraphPage, GraphResource, GraphSummary, MermaidDocument

router = APIRouter(prefix="/graphs", tags=["graphs"], route_class=JsonRulesRoute)

GraphDocument = Annotated[
    dict[str, Any],
    Body(
        description="A graph definition in any accepted dialect; a key it does not know, "
        "anywhere in it, is refused.",
        openapi_examples=GRAPH_EXAMPLES,
    ),
]
GraphId = Annotated[
    str, Path(min_length=1, max_length=128, examples=[EXAMPLE_GRAPH_ID], description="Graph id")
]
Reuse = Annotated[bool, Query(description="Answer an existing graph with the same content, if any")]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size")]
Cursor = Annotated[
    str | None, Query(min_length=1, max_length=2048, description="From a previous page")
]


@router.post(
    "",
    status_code=201,
    response_model=GraphResource,
    responses={
        200: {"model": GraphResource, "description": "With `reuse=true`: the existing graph."},
        **error_responses(400, 413, 422),
    },
    summary="Create a graph",
)
def create_graph(
    doc: GraphDocument,
    service: Service,
    caller: CurrentCaller,
    response: Response,
    reuse: Reuse = False,
) -> GraphResource:
    """Validate a definition in any dialect and store its canonical form.

    A definition with problems is refused with 422, listing every problem with its location
    in the document as sent (a key the form does not have, too, with a "did you mean").
    With `reuse=true`, a graph with the same canonical content is answered (200) instead of
    creating a copy (201); its id is derived from the content."""
    if not reuse:
        record, _graph = service.create_graph(doc, owner=caller.sub)
        return GraphResource.from_record(record)
    record, _graph, created = service.find_or_create_graph(doc, owner=caller.sub)
    response.status_code = 201 if created else 200
    return GraphResource.from_record(record)


@router.get("", response_model=GraphPage, responses=error_responses(422), summary="List graphs")
def list_graphs(
    service: Service, caller: CurrentCaller, limit: Limit = 50, cursor: Cursor = None
) -> GraphPage:
    """The caller's graphs (an admin's: everyone's), newest first; follow `next_cursor`."""
    page = service.store.list_graphs(limit=limit, cursor=cursor, owner=caller.owner_filter)
    return GraphPage(
        items=[GraphSummary.from_record(g) for g in page.items], next_cursor=page.cursor
    )


@router.get(
    "/{graph_id}",
    response_model=GraphResource,
    responses=error_responses(404, 422),
    summary="Read a graph",
)
def get_graph(graph_id: GraphId, service: Service, caller: CurrentCaller) -> GraphResource:
    return GraphResource.from_record(visible_graph(service, caller, graph_id))


@router.get(
    "/{graph_id}/mermaid",
    response_model=None,
    responses={
        200: {
            "model": MermaidDocument,
            "description": "Mermaid flowchart text, or JSON with `?format=json`.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 422),
    },
    summary="Render a graph as Mermaid",
)
def get_mermaid(
    graph_id: GraphId,
    service: Service,
    caller: CurrentCaller,
    format: Annotated[Literal["text", "json"], Query(description="text/plain or JSON")] = "text",
) -> Response:
    from engine.mermaid import mermaid_ids, to_mermaid  # only this route needs them

    visible_graph(service, caller, graph_id)
    graph = service.graph(graph_id)
    text = to_mermaid(graph)
    if format == "json":
        doc = MermaidDocument(graph_id=graph_id, mermaid=text, node_ids=mermaid_ids(graph))
        return Response(doc.model_dump_json(), media_type="application/json")
    return PlainTextResponse(text)
