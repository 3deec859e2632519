"""The JSON API described as OpenAPI 3.1: ``GET /api/openapi.json``.

The document is a plain dict built here, next to nothing else: the routes stay in their blueprints (``web.api``,
``web.anatomy``, ``web.timeline``, ``web.decode``) and this module says what each one takes and answers. Three
things keep it from falling behind the code:

- ``tests/test_openapi.py`` compares it with the Flask url map: every rule under ``/api/`` and each of its methods
  (HEAD and OPTIONS aside, which Flask adds to every GET) must be an operation here whose ``operationId`` is the
  rule's endpoint, unless :data:`UNDOCUMENTED` names the rule with the reason;
- the same test runs schemathesis against the running app with this document: generated and hostile values for
  every parameter, anonymously and signed in, and every answer must be no server error, have a status listed
  here, and match the schema listed for that status;
- ``docs/api.md`` is written from it (``python scripts/api_docs.py``), and a test checks that it is current.

Limits and defaults come from the modules that enforce them (``store.queries``, ``pipeline.decoding.similar``, ...),
so the
document states the numbers the code uses. Response schemas list every field a route always sends as required and
leave the objects open (a new field is not a break for a client); a field renamed or dropped fails the check.
Path parameters carry an example from the demo data that ``python app.py`` loads, so a reader can try them and
schemathesis reaches the answers with a body, not only the 404s.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import flask

from pipeline.anatomy.atlas import ATLASES, DEFAULT_ATLAS
from pipeline.anatomy.clusters import DEFAULT_MIN_VOXELS, DEFAULT_THRESHOLDS, MAX_MIN_VOXELS, MAX_THRESHOLD
from pipeline.decoding import similar
from store import queries
from store import timeline as store_timeline
from store.models import DECODE_MASKS
from web.anatomy import MAX_COORDINATE

blueprint = flask.Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
# Rules under /api/ that are not operations of the document, each with the reason (the coverage test reads this).
UNDOCUMENTED = {
    "/api/<path:unknown>": "the catch-all for addresses that name no route: a JSON 404 (the Error schema), never "
    "an operation a client calls",
}
# Values from the demo data (``pipeline.curation.demo``), so that examples answer 200 on a fresh ``python app.py``.
DEMO_TERM = "visual"
DEMO_MOVIE = "forrest-gump"
DEMO_COLLECTION = "demo-grand-budapest"
DEMO_COMPONENT = "0a74525a-c5c9-510c-b504-f88c09864c8d"
DEMO_LABEL = "faces"
DEMO_ANNOTATION_SET = 1


# --- schema helpers ----------------------------------------------------------------------------------------------


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, description: str = "") -> dict[str, Any]:
    """An open object whose listed properties are all required unless ``required`` says otherwise."""
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if description:
        out["description"] = description
    return out


def _answer(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A top-level answer of ``web.api.json_response``: the properties plus the demo ``notice``."""
    return _obj({**properties, "notice": ref("Notice")}, description=description)


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _page(item: str, description: str) -> dict[str, Any]:
    """A page of a listing (``store.queries.Page.to_dict``)."""
    return _answer({"items": _list(ref(item)), "page": INT, "per_page": INT, "total": INT, "pages": INT}, description)


def _keyset_page(item: str, description: str) -> dict[str, Any]:
    """A page of a listing that also pages by cursor: ``page`` is null for a page asked for by cursor."""
    return _answer(
        {
            "items": _list(ref(item)),
            "page": {**_nullable(INT), "description": "The page number; null for a page asked for by cursor."},
            "per_page": INT,
            "total": INT,
            "pages": INT,
            "next_cursor": {
                **_nullable(STR),
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
        description,
    )


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
OPT_STR = _nullable(STR)
OPT_NUM = _nullable(NUM)
DATE_TIME: dict[str, Any] = {"type": "string", "description": "ISO 8601 date and time"}
OPT_DATE_TIME = _nullable(DATE_TIME)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Notice": {
        "type": "string",
        "description": "Says that collections with is_demo=true hold synthetic demo data "
        "(every JSON answer of the API carries it).",
    },
    "Error": _obj(
        {
            "error": {"type": "string", "description": "What went wrong, in words a person can act on."},
            "notice": ref("Notice"),
            "ok": {"const": False, "description": "Sent by the decoder's refusals."},
        },
        required=["error"],
        description="Every error of the API (4xx), also for unknown addresses under /api/ and wrong methods.",
    ),
    "Stats": _answer(
        {"movies": INT, "collections": INT, "components": INT, "terms": INT},
        "What the viewer may see, and the active reference set's terms.",
    ),
    "Heatmap": _answer(
        {
            "terms": _list(STR),
            "term_slugs": _list(STR),
            "movies": _list(STR),
            "movie_slugs": _list(STR),
            "count": {**_list(_list(INT)), "description": "Components per term (row) and movie (column)."},
            "mean_r": {**_list(_list(OPT_NUM)), "description": "Their mean r (null for an empty cell)."},
            "n_terms": INT,
            "n_movies": INT,
        },
        "The most used terms x the movies with most components.",
    ),
    "SearchItem": _obj({"kind": {"enum": ["term", "movie"]}, "label": STR, "href": STR}),
    "SearchResults": _answer({"items": _list(ref("SearchItem"))}, "Terms first, then movies; at most 8."),
    "TermSummary": _obj({"name": STR, "slug": STR, "n_movies": INT, "n_components": INT, "mean_r": OPT_NUM}),
    "TermMovie": _obj({"title": STR, "slug": STR, "n_components": INT, "mean_r": NUM, "has_merged_map": BOOL}),
    "Term": _answer(
        {
            "name": STR,
            "slug": STR,
            "reference_set": STR,
            "has_mean_map": BOOL,
            "n_components_mean_map": INT,
            "n_movies": INT,
            "n_components": INT,
            "movies": {
                **_list(ref("TermMovie")),
                "description": f"Most components first, at most {queries.MAX_TERM_MOVIES}.",
            },
        },
        "A term of the active reference set and the movies whose components it decodes best.",
    ),
    "MovieSummary": _obj(
        {
            "title": STR,
            "slug": STR,
            "year": _nullable(INT),
            "n_collections": INT,
            "n_components": INT,
            "latest": OPT_DATE_TIME,
        }
    ),
    "MovieTerm": _obj(
        {
            "name": STR,
            "slug": STR,
            "n_components": INT,
            "mean_r": NUM,
            "share": NUM,
            "score": NUM,
            "has_merged_map": BOOL,
        }
    ),
    "Movie": _answer(
        {
            "title": STR,
            "slug": STR,
            "year": _nullable(INT),
            "n_components": INT,
            "terms": {
                **_list(ref("MovieTerm")),
                "description": f"Best score first, at most {queries.MAX_MOVIE_TERMS}.",
            },
            "collections": {
                **_list(ref("Collection")),
                "description": f"Oldest first, at most {queries.MAX_MOVIE_COLLECTIONS}.",
            },
            "n_collections": INT,
            "n_terms": INT,
        }
    ),
    "MovieTermCell": _answer(
        {
            "movie": STR,
            "movie_slug": STR,
            "term": STR,
            "term_slug": STR,
            "has_merged_map": BOOL,
            "n_merged": INT,
            "components": {
                **_list(ref("ComponentSummary")),
                "description": f"Best r first, at most {queries.MAX_PER_PAGE}.",
            },
            "n_components": INT,
        },
        "One movie x term cell: its components and merged map.",
    ),
    "ComponentSummary": _obj(
        {
            "uuid": STR,
            "source_file": STR,
            "volume": {**INT, "description": "Volume of the source file, from 1."},
            "best_term": OPT_STR,
            "best_term_slug": OPT_STR,
            "best_r": OPT_NUM,
            "qc_warnings": _list(STR),
            "collection": STR,
            "collection_slug": STR,
            "movie": STR,
            "movie_slug": STR,
            "is_demo": BOOL,
            "visibility": {"enum": ["public", "private"]},
            "isc": {**OPT_NUM, "description": "Leave-one-out ISC (Fisher-z mean); in lists, null without ISC."},
            "isc_q": {**OPT_NUM, "description": "BH q of the ISC over the collection's components; in lists."},
        },
        required=[
            "uuid",
            "source_file",
            "volume",
            "best_term",
            "best_term_slug",
            "best_r",
            "qc_warnings",
            "collection",
            "collection_slug",
            "movie",
            "movie_slug",
            "is_demo",
            "visibility",
        ],
    ),
    "Decoding": _obj({"term": STR, "slug": STR, "r": NUM, "rank": INT}),
    "Component": {
        "allOf": [
            ref("ComponentSummary"),
            _answer(
                {
                    "decoded_at": OPT_DATE_TIME,
                    "decodings": {
                        **_list(ref("Decoding")),
                        "description": "Best first: the stored top terms, or every term with ?full=1.",
                    },
                }
            ),
        ]
    },
    "SimilarComponent": _obj(
        {
            "uuid": STR,
            "r": NUM,
            "movie": STR,
            "movie_slug": STR,
            "collection": STR,
            "collection_slug": STR,
            "best_term": OPT_STR,
            "best_term_slug": OPT_STR,
            "is_demo": BOOL,
        }
    ),
    "SimilarComponents": _answer(
        {"uuid": STR, "items": _list(ref("SimilarComponent"))},
        "The components most like one component (spatial r over the brain mask).",
    ),
    "Collection": _obj(
        {
            "name": STR,
            "slug": STR,
            "movie": STR,
            "movie_slug": STR,
            "description": STR,
            "dataset_url": STR,
            "doi": STR,
            "contributors": STR,
            "license": STR,
            "visibility": {"enum": ["public", "private"]},
            "owner": STR,
            "status": STR,
            "is_demo": BOOL,
            "metadata": {"type": "object", "description": "The study's typed metadata (pipeline.curation.metadata)."},
            "created": OPT_DATE_TIME,
            "n_components": INT,
        }
    ),
    "CollectionAnswer": {"allOf": [ref("Collection"), _answer({})]},
    "AtlasSource": _obj(
        {"id": STR, "name": STR, "probabilistic": BOOL, "license": STR, "license_url": STR, "citation": STR}
    ),
    "Atlases": _answer({"default": STR, "items": _list(ref("AtlasSource"))}),
    "AtlasLabel": _obj({"atlas": STR, "label": OPT_STR, "probability": OPT_NUM}),
    "AtlasLookup": _answer(
        {
            "x": NUM,
            "y": NUM,
            "z": NUM,
            "voxel": _nullable(_list(INT)),
            "voxel_mm": _nullable(_list(NUM)),
            "labels": _list(ref("AtlasLabel")),
            "sources": {"type": "object", "additionalProperties": ref("AtlasSource")},
        },
        "Region names at an MNI point, per atlas (voxel null outside the grid).",
    ),
    "ClusterRegion": _obj({"label": OPT_STR, "share": NUM}),
    "Cluster": _obj(
        {
            "cluster": INT,
            "sign": {"enum": ["positive", "negative"]},
            "atlas": STR,
            "voxels": INT,
            "volume_mm3": NUM,
            "peak_value": NUM,
            "peak_x": NUM,
            "peak_y": NUM,
            "peak_z": NUM,
            "peak_i": INT,
            "peak_j": INT,
            "peak_k": INT,
            "peak_label": OPT_STR,
            "peak_probability": OPT_NUM,
            "regions": _list(ref("ClusterRegion")),
        },
        required=["cluster", "sign", "voxels", "peak_value", "peak_x", "peak_y", "peak_z", "regions"],
    ),
    "ClusterTable": _answer(
        {
            "threshold": NUM,
            "threshold_negative": NUM,
            "min_voxels": INT,
            "atlas": STR,
            "source": ref("AtlasSource"),
            "items": _list(ref("Cluster")),
            "total": INT,
        },
        "The face-connected clusters of a map above the thresholds, largest first.",
    ),
    "TimeCourse": _answer(
        {
            "tr": NUM,
            "subjects": INT,
            "movie_time_s": _list(NUM),
            "values": {**_list(NUM), "description": "Mean over subjects, one value per TR."},
            "sd": {**_nullable(_list(NUM)), "description": "SD over subjects (null for one)."},
            "runs": {
                **_list({"type": "array", "prefixItems": [NUM, INT]}),
                "description": "[movie start (s), TRs] per run.",
            },
        }
    ),
    "TemporalDecoding": _obj(
        {"annotation": STR, "annotation_id": INT, "label": STR, "r": NUM, "p": NUM, "q": NUM, "rank": INT}
    ),
    "TemporalDecodings": _answer(
        {"items": _list(ref("TemporalDecoding"))},
        "How the component's time course follows each annotation label, best first.",
    ),
    "AnnotationLabel": _obj({"label": STR, "events": INT}),
    "AnnotationSet": _obj(
        {
            "id": INT,
            "name": STR,
            "description": STR,
            "source_url": STR,
            "owner_id": _nullable(INT),
            "is_demo": BOOL,
            "created": DATE_TIME,
            "n_events": INT,
            "labels": _list(ref("AnnotationLabel")),
            "events_url": STR,
        }
    ),
    "AnnotationSets": _answer({"movie": STR, "items": _list(ref("AnnotationSet"))}),
    "AnnotationEvent": _obj({"onset": NUM, "duration": NUM, "label": STR, "amplitude": NUM}),
    "LabelComponent": _obj(
        {
            "uuid": STR,
            "movie": STR,
            "movie_slug": STR,
            "collection": STR,
            "annotation": STR,
            "r": NUM,
            "p": NUM,
            "q": NUM,
        }
    ),
    "Label": _answer(
        {
            "label": STR,
            "items": {
                **_list(ref("LabelComponent")),
                "description": f"Best first (lowest q), at most {store_timeline.MAX_LABEL_COMPONENTS}.",
            },
            "q_below": NUM,
        },
        "The components that follow an annotation label (q below q_below).",
    ),
    "DecodeStatus": {"enum": ["queued", "running", "done", "failed"]},
    "DecodeAccepted": _answer(
        {
            "ok": {"const": True},
            "id": STR,
            "url": {**STR, "description": "The result's page."},
            "status": ref("DecodeStatus"),
            "error": OPT_STR,
            "filename": STR,
            "mask": STR,
            "reference": STR,
            "volumes": {**INT, "description": "Volumes in the file."},
            "done": INT,
            "warnings": _list(STR),
            "expires": DATE_TIME,
        },
        "A map the decoder accepted: decoded already (200) or queued (202).",
    ),
    "DecodedVolume": _obj(
        {
            "volume": INT,
            "error": OPT_STR,
            "warnings": _list(STR),
            "terms": _list(_obj({"term": STR, "r": NUM})),
            "similar": _list(ref("SimilarComponent")),
        }
    ),
    "DecodeResult": _answer(
        {
            "id": STR,
            "url": STR,
            "status": ref("DecodeStatus"),
            "error": OPT_STR,
            "filename": STR,
            "mask": STR,
            "reference": STR,
            "done": INT,
            "warnings": _list(STR),
            "expires": DATE_TIME,
            "volumes": {**_list(ref("DecodedVolume")), "description": "Empty until the decoding is done."},
        },
        "A decoding of a visitor's map: its state and, once done, every volume's terms (best first) and similar "
        "components.",
    ),
    "Deleted": _answer({"deleted": {"const": True}}),
    "System": _answer(
        {
            "environment": STR,
            "background": {"type": "object"},
            "jobs": {"type": "object"},
            "queue_warn_s": NUM,
            "settings": {"type": "object"},
        },
        "The System page's report (administrators only).",
    ),
    "Routes": _answer({"routes": _list(STR)}, "Every rule under /api/ of the running app."),
}
for _name in ("Terms", "Movies", "Components", "Collections", "AnnotationEvents"):
    _item = {
        "Terms": "TermSummary",
        "Movies": "MovieSummary",
        "Components": "ComponentSummary",
        "Collections": "Collection",
        "AnnotationEvents": "AnnotationEvent",
    }[_name]
    _make = _keyset_page if _name in ("Components", "Collections") else _page
    SCHEMAS[_name] = _make(_item, f"A page of {_item} objects.")


# --- parameters and responses ------------------------------------------------------------------------------------


def path(name: str, description: str, example: Any, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or STR,
        "example": example,
    }


def query(
    name: str, description: str, schema: dict[str, Any] | None = None, required: bool = False, example: Any = None
) -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": required, "description": description, "schema": schema or STR}
    if example is not None:
        out["example"] = example
    return out


PAGE = query(
    "page",
    f"Page number, 1 to {queries.MAX_PAGE:,} (bounded to that range; anything else gives 1).",
    {"type": "integer", "minimum": 1, "maximum": queries.MAX_PAGE, "default": 1},
)
PER_PAGE = query(
    "per_page",
    "Items per page (bounded to the range; anything else gives the default).",
    {"type": "integer", "minimum": 1, "maximum": queries.MAX_PER_PAGE, "default": queries.DEFAULT_PER_PAGE},
)
CURSOR = query(
    "cursor",
    "The `next_cursor` of an earlier answer of this listing (same sort): the page after its last row, read along "
    "the index however deep (`page` is then ignored). An unknown or altered cursor gives 400.",
)
SEARCH = query("search", "Keep the rows whose name contains this text (case-insensitive; % and _ match themselves).")
UUID = path("uuid", "The component's id.", DEMO_COMPONENT)
TERM_SLUG = path("slug", "The term's slug (active reference set).", DEMO_TERM)
MOVIE_SLUG = path("slug", "The movie's slug.", DEMO_MOVIE)
ATLAS = query("atlas", f"Atlas for the region names (default {DEFAULT_ATLAS}).", {"enum": list(ATLASES)})
CLUSTER_QUERY = [
    query(
        "threshold",
        "Positive threshold, 0 or more (default: the map kind's, from "
        f"{min(DEFAULT_THRESHOLDS.values()):g} to {max(DEFAULT_THRESHOLDS.values()):g}).",
        {"type": "number", "minimum": 0, "maximum": MAX_THRESHOLD},
    ),
    query(
        "threshold_negative",
        "Absolute value of the negative threshold (default: the positive one).",
        {"type": "number", "minimum": 0, "maximum": MAX_THRESHOLD},
    ),
    query(
        "min_voxels",
        f"Smallest cluster kept, in voxels (default {DEFAULT_MIN_VOXELS}).",
        {"type": "integer", "minimum": 1, "maximum": MAX_MIN_VOXELS},
    ),
    ATLAS,
]


def ok(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def op(
    endpoint: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    parameters: Sequence[dict[str, Any]] = (),
    description: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """An operation; its ``operationId`` is the Flask endpoint that answers it."""
    out = {
        "operationId": endpoint,
        "tags": [tag],
        "summary": summary,
        "parameters": list(parameters),
        "responses": responses,
        **extra,
    }
    if description:
        out["description"] = description
    return out


NOT_FOUND = err("Not found, or not visible to this viewer (private data is 404, not 403).")
BAD = err("A parameter is not valid (the error says which).")
BAD_CURSOR = err("The cursor is not one this listing gave out (for its sort).")


# --- the operations ----------------------------------------------------------------------------------------------


def _catalog_paths() -> dict[str, Any]:
    return {
        "/api/": {"get": op("api.index", "meta", "List the API's routes", {"200": ok("Routes")})},
        "/api/openapi.json": {
            "get": op(
                "openapi.document",
                "meta",
                "This document (OpenAPI 3.1)",
                {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
            )
        },
        "/api/stats": {"get": op("api.stats", "catalog", "Counts of what the viewer may see", {"200": ok("Stats")})},
        "/api/heatmap": {
            "get": op(
                "api.heatmap",
                "catalog",
                "Term x movie heatmap",
                {"200": ok("Heatmap")},
                [
                    query(
                        axis,
                        f"How many {axis} (bounded to the range; anything else gives the default).",
                        {"type": "integer", "minimum": 1, "maximum": queries.MAX_HEATMAP, "default": default},
                    )
                    for axis, default in (
                        ("terms", queries.DEFAULT_HEATMAP_TERMS),
                        ("movies", queries.DEFAULT_HEATMAP_MOVIES),
                    )
                ],
            )
        },
        "/api/search": {
            "get": op(
                "api.search",
                "catalog",
                "Search suggestions: terms and movies",
                {"200": ok("SearchResults")},
                [query("q", "Text in the name (two characters at least).")],
            )
        },
        "/api/terms": {
            "get": op(
                "api.terms",
                "catalog",
                "List the active reference set's terms",
                {"200": ok("Terms")},
                [
                    SEARCH,
                    query("sort", "Sort key (unknown keys sort by name).", {"enum": list(queries.TERM_SORTS)}),
                    query("order", "desc for descending.", {"enum": ["asc", "desc"]}),
                    PAGE,
                    PER_PAGE,
                ],
            )
        },
        "/api/terms/{slug}": {
            "get": op("api.term", "catalog", "A term", {"200": ok("Term"), "404": NOT_FOUND}, [TERM_SLUG])
        },
        "/api/movies": {
            "get": op(
                "api.movies",
                "catalog",
                "List the movies with visible collections",
                {"200": ok("Movies")},
                [
                    SEARCH,
                    query("sort", "Sort key (unknown keys sort by title).", {"enum": list(queries.MOVIE_SORTS)}),
                    PAGE,
                    PER_PAGE,
                ],
            )
        },
        "/api/movies/{slug}": {
            "get": op(
                "api.movie",
                "catalog",
                "A movie: its terms and collections",
                {"200": ok("Movie"), "404": NOT_FOUND},
                [MOVIE_SLUG],
            )
        },
        "/api/movies/{slug}/{term}": {
            "get": op(
                "api.movie_term",
                "catalog",
                "A movie x term cell",
                {"200": ok("MovieTermCell"), "404": NOT_FOUND},
                [MOVIE_SLUG, path("term", "The term's slug.", DEMO_TERM)],
            )
        },
        "/api/components": {
            "get": op(
                "api.components",
                "catalog",
                "List the visible components",
                {"200": ok("Components"), "400": BAD_CURSOR},
                [
                    query("term", "Only components whose best term has this slug."),
                    query("movie", "Only components of this movie (slug)."),
                    query("collection", "Only components of this collection (slug)."),
                    query(
                        "sort",
                        "r: best r first (default); file: by source file and volume; "
                        "isc: highest leave-one-out ISC first.",
                        {"enum": list(queries.COMPONENT_SORTS)},
                    ),
                    PAGE,
                    PER_PAGE,
                    CURSOR,
                ],
            )
        },
        "/api/components/{uuid}": {
            "get": op(
                "api.component",
                "catalog",
                "A component and its decodings",
                {"200": ok("Component"), "404": NOT_FOUND},
                [UUID, query("full", "1: every term's r, not only the stored top terms.", {"enum": ["1"]})],
            )
        },
        "/api/components/{uuid}/similar": {
            "get": op(
                "api.component_similar",
                "catalog",
                "The most similar components",
                {
                    "200": ok("SimilarComponents"),
                    "400": BAD,
                    "404": NOT_FOUND,
                    "409": err("The component is not in the similarity index yet."),
                },
                [
                    UUID,
                    query(
                        "limit",
                        "How many (a whole number in the range, else 400).",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": similar.MAX_LIMIT,
                            "default": similar.DEFAULT_LIMIT,
                        },
                    ),
                ],
            )
        },
        "/api/collections": {
            "get": op(
                "api.collections",
                "catalog",
                "List the visible collections, newest first",
                {"200": ok("Collections"), "400": BAD_CURSOR},
                [PAGE, PER_PAGE, CURSOR],
            )
        },
        "/api/collections/{slug}": {
            "get": op(
                "api.collection",
                "catalog",
                "A collection",
                {"200": ok("CollectionAnswer"), "404": NOT_FOUND},
                [path("slug", "The collection's slug.", DEMO_COLLECTION)],
            )
        },
        "/api/system": {
            "get": op(
                "api.system",
                "system",
                "The System page's report",
                {
                    "200": ok("System"),
                    "401": err("Not signed in."),
                    "403": err("Signed in, but not as an administrator."),
                },
            )
        },
    }


def _anatomy_paths() -> dict[str, Any]:
    clusters = {"200": ok("ClusterTable"), "400": BAD, "404": err("The map is not there, or not visible.")}
    return {
        "/api/atlases": {
            "get": op("anatomy.atlases", "anatomy", "The atlases, with licenses and citations", {"200": ok("Atlases")})
        },
        "/api/atlas": {
            "get": op(
                "anatomy.atlas_lookup",
                "anatomy",
                "Region names at an MNI point",
                {"200": ok("AtlasLookup"), "400": BAD},
                [
                    *(
                        query(
                            axis,
                            f"MNI {axis} in mm (a finite number, |{axis}| <= {MAX_COORDINATE:g}).",
                            {"type": "number", "minimum": -MAX_COORDINATE, "maximum": MAX_COORDINATE},
                            required=True,
                            example=example,
                        )
                        for axis, example in zip("xyz", (-40, -22, 60))
                    ),
                    query("atlas", "Only this atlas (default: every atlas).", {"enum": list(ATLASES)}),
                ],
            )
        },
        "/api/components/{uuid}/clusters": {
            "get": op(
                "anatomy.component_clusters",
                "anatomy",
                "A component map's cluster table",
                clusters,
                [UUID, *CLUSTER_QUERY],
            )
        },
        "/api/terms/{term}/clusters": {
            "get": op(
                "anatomy.term_clusters",
                "anatomy",
                "A term's reference (or mean) map's cluster table",
                clusters,
                [
                    path("term", "The term's slug.", DEMO_TERM),
                    query(
                        "map",
                        "mean: the mean of the components this term decodes best, instead of the reference map.",
                        {"enum": ["mean"]},
                    ),
                    *CLUSTER_QUERY,
                ],
            )
        },
        "/api/movies/{movie}/{term}/clusters": {
            "get": op(
                "anatomy.merged_clusters",
                "anatomy",
                "A movie x term merged map's cluster table",
                clusters,
                [
                    path("movie", "The movie's slug.", DEMO_MOVIE),
                    path("term", "The term's slug.", DEMO_TERM),
                    *CLUSTER_QUERY,
                ],
            )
        },
    }


def _timeline_paths() -> dict[str, Any]:
    return {
        "/api/components/{uuid}/timecourse": {
            "get": op(
                "timeline.component_timecourse",
                "timeline",
                "A component's time course (mean over subjects)",
                {"200": ok("TimeCourse"), "404": err("No such visible component, or it has no time course.")},
                [UUID],
            )
        },
        "/api/components/{uuid}/temporal": {
            "get": op(
                "timeline.component_temporal",
                "timeline",
                "A component's temporal decodings",
                {"200": ok("TemporalDecodings"), "404": NOT_FOUND},
                [UUID],
            )
        },
        "/api/movies/{slug}/annotations": {
            "get": op(
                "timeline.movie_annotations",
                "timeline",
                "A movie's annotation sets and their labels",
                {"200": ok("AnnotationSets"), "404": NOT_FOUND},
                [MOVIE_SLUG],
            )
        },
        "/api/movies/{slug}/annotations/{set_id}/events": {
            "get": op(
                "timeline.annotation_events",
                "timeline",
                "One page of an annotation set's events, by onset",
                {"200": ok("AnnotationEvents"), "404": NOT_FOUND},
                [
                    MOVIE_SLUG,
                    path("set_id", "The annotation set's id.", DEMO_ANNOTATION_SET, {"type": "integer", "minimum": 0}),
                    PAGE,
                    query(
                        "per_page",
                        "Events per page (bounded to the range; anything else gives the default).",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": store_timeline.MAX_EVENTS_PER_PAGE,
                            "default": store_timeline.DEFAULT_EVENTS_PER_PAGE,
                        },
                    ),
                ],
            )
        },
        "/api/labels/{label}": {
            "get": op(
                "timeline.label",
                "timeline",
                "The components that follow an annotation label",
                {"200": ok("Label")},
                [path("label", "The label, as in an annotation set (may hold slashes).", DEMO_LABEL)],
            )
        },
    }


DECODE_REFUSALS = {
    "400": err("The file or an option is not valid (name, type, an empty or broken file, mask)."),
    "403": err("A request with the session cookie but without its CSRF token (X-CSRFToken)."),
    "408": err("The body arrived too slowly, or not within the deadline."),
    "413": err("The file is larger than the viewer may send."),
    "415": err("Not a map the decoder reads (by the file name's ending)."),
    "422": err("Not a map on a grid the decoder can resample, or too many volumes."),
    "429": err(
        "Too many files from this sender this hour, or two being sent already (Retry-After says when to send again)."
    ),
    "503": err("Every upload slot of this web process is taken (Retry-After)."),
}


def _decode_paths() -> dict[str, Any]:
    token = path("token", "The decoding's id (from POST /api/decode).", "0" * 32)
    body = {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": _obj(
                    {
                        "file": {"type": "string", "format": "binary"},
                        "mask": {"enum": list(DECODE_MASKS)},
                        "reference": STR,
                    },
                    required=["file"],
                )
            },
        },
    }
    return {
        "/api/decode": {
            "post": op(
                "decode.create",
                "decoder",
                "Decode a map (NIfTI, 3D or 4D) against the reference set",
                {
                    "200": ok("DecodeAccepted", "Decoded at once (a 3D or small 4D map)."),
                    "202": ok("DecodeAccepted", "Accepted; a background job decodes it (poll its GET)."),
                    **DECODE_REFUSALS,
                },
                [
                    query("name", "The file's name, when the body is the raw file (its ending tells the type)."),
                    query(
                        "mask",
                        "brain (default): the brain mask; nonzero: the map's own non-zero voxels.",
                        {"enum": list(DECODE_MASKS)},
                    ),
                    query("reference", "A reference set other than the active one (its name)."),
                ],
                "The file is the raw body (with ?name=) or the multipart field 'file'. Anonymous requests need no "
                "token; with a session cookie the X-CSRFToken header must match it.",
                requestBody=body,
            )
        },
        "/api/decode/{token}": {
            "get": op(
                "decode.result",
                "decoder",
                "A decoding's state and result",
                {"200": ok("DecodeResult"), "404": err("No such decoding (it may have expired).")},
                [token],
            ),
            "delete": op(
                "decode.remove",
                "decoder",
                "Delete a decoding now (its owner, signed in, or an administrator)",
                {
                    "200": ok("Deleted"),
                    "403": err("Not the owner (or a missing CSRF token)."),
                    "404": err("No such decoding (it may have expired)."),
                },
                [token],
            ),
        },
    }


def _csv(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/csv": {"schema": {"type": "string"}}}}


COLLECTION_SLUG = path("slug", "The collection's slug.", DEMO_COLLECTION)
SCHEMAS["ComponentISC"] = _answer(
    {
        "uuid": STR,
        "isc": {**OPT_NUM, "description": "Leave-one-out ISC, Fisher-z mean over subjects (null under 3 subjects)."},
        "isc_pairwise": {**OPT_NUM, "description": "Pairwise ISC, Fisher-z mean over subject pairs."},
        "p": {**OPT_NUM, "description": "One-sided p from a phase-randomisation null done per run."},
        "q": {**OPT_NUM, "description": "Benjamini-Hochberg q over the collection's components."},
        "n_subjects": INT,
        "n_resamples": INT,
        "note": {**STR, "description": "Why a value is null (one subject, a constant series), else empty."},
        "subjects": {**_list(OPT_NUM), "description": "Each subject's leave-one-out r."},
        "window_s": {**OPT_NUM, "description": "Window of the windowed ISC, in seconds."},
        "movie_time_s": {**_list(OPT_NUM), "description": "Movie time of each window's centre."},
        "windowed": {**_list(OPT_NUM), "description": "Leave-one-out ISC in each window."},
    },
    "A component's inter-subject correlation (null values when the data cannot give them; never NaN).",
)
SCHEMAS["CollectionISFC"] = _answer(
    {
        "collection": STR,
        "components": {**_list(STR), "description": "Component uuids, the order of the matrix's rows and columns."},
        "best_terms": _list(OPT_STR),
        "n_subjects": INT,
        "note": STR,
        "matrix": {**_list(_list(OPT_NUM)), "description": "Leave-one-out ISFC, symmetrised, Fisher-z mean."},
    },
    "The inter-subject functional correlation between a collection's components (empty before it is computed).",
)
SCHEMAS["MovieSynchrony"] = _answer(
    {
        "movie": STR,
        "movie_slug": STR,
        "moments": _list(_obj({"collection": STR, "time_s": OPT_NUM, "value": OPT_NUM, "labels": _list(STR)})),
        "by_label": _list(
            _obj(
                {
                    "collection": STR,
                    "component": STR,
                    "best_term": OPT_STR,
                    "annotation": STR,
                    "label": STR,
                    "inside": OPT_NUM,
                    "outside": OPT_NUM,
                    "p": OPT_NUM,
                }
            )
        ),
    },
    "Moments of synchrony (the across-component mean of windowed ISC above its null) and windowed ISC during "
    "each annotation label against outside it, with p from circular shifts of the events.",
)


def _synchrony_paths() -> dict[str, Any]:
    def get(endpoint: str, summary: str, answer: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
        return {"get": op(endpoint, "synchrony", summary, {"200": answer, "404": NOT_FOUND}, [parameter])}

    return {
        "/api/components/{uuid}/isc": get(
            "api.component_isc", "A component's inter-subject correlation", ok("ComponentISC"), UUID
        ),
        "/api/components/{uuid}/isc.csv": get(
            "api.component_isc_csv",
            "A component's ISC as CSV (a row per subject, then a row per window)",
            _csv("part (subject or window), index, movie_time_s, r"),
            UUID,
        ),
        "/api/collections/{slug}/isfc": get(
            "api.collection_isfc",
            "The ISFC matrix between a collection's components",
            ok("CollectionISFC"),
            COLLECTION_SLUG,
        ),
        "/api/collections/{slug}/isfc.csv": get(
            "api.collection_isfc_csv",
            "The ISFC matrix as CSV",
            _csv("A header of component uuids, then one row per component."),
            COLLECTION_SLUG,
        ),
        "/api/movies/{slug}/synchrony": get(
            "api.movie_synchrony", "A movie's moments of synchrony and ISC by label", ok("MovieSynchrony"), MOVIE_SLUG
        ),
        "/api/movies/{slug}/synchrony.csv": get(
            "api.movie_synchrony_csv",
            "A movie's synchrony as CSV",
            _csv("The moments (part = moment), then the rows by label (part = label)."),
            MOVIE_SLUG,
        ),
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API under /api/ (a new dict each call)."""
    paths = {**_catalog_paths(), **_anatomy_paths(), **_timeline_paths(), **_decode_paths(), **_synchrony_paths()}
    return copy.deepcopy(
        {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "INcDb API",
                "version": API_VERSION,
                "description": "The Internet Neurocinematics Database's JSON API. Read-only but for the public "
                "decoder; the same visibility rules as the pages (a signed-in curator also sees "
                "their private collections). Every answer is JSON with a 'notice' about demo "
                'data; errors are {"error": "..."} with a 4xx status.',
            },
            "tags": [
                {"name": "meta"},
                {"name": "catalog"},
                {"name": "anatomy"},
                {"name": "timeline"},
                {"name": "synchrony"},
                {"name": "decoder"},
                {"name": "system"},
            ],
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": SCHEMAS},
        }
    )


@blueprint.get("/api/openapi.json")
def document():
    response = flask.jsonify(openapi_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
