"""Tables with links, and paged tables (search, sort, pages) kept in the query string.

A paged table is drawn by a *source*: a function that reads one page of data for the current user and returns the
table. The layout draws the first page on the server (so a shared URL shows the right page at once); one
pattern-matching callback redraws only the table body when the search, sort or page changes, and writes them to
the address bar (``urlstate``), so the rest of the page, a viewer included, stays untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html
from sqlalchemy.orm import Session

from dashboard.components.common import (
    Child,
    empty_state,
    fmt_date,
    fmt_r,
    group_label,
    link,
    plural,
    row_badges,
)
from dashboard.components.data import arg, int_arg
from dashboard.components.thumbnails import component_thumbnail, term_thumbnail, with_thumbnail
from store import queries
from store.db import session_scope
from web.auth import viewer

PREFIX = "incdb-table-"


def table_id(kind: str, name: str) -> dict[str, str]:
    return {"type": PREFIX + kind, "table": name}


@dataclass(frozen=True)
class Column:
    header: Child
    cell: Callable[[dict[str, Any]], Child]
    class_name: str = ""
    key: str = ""  # lets a page hide a column, e.g. "movie" on a movie's own page


def data_table(
    columns: Sequence[Column], rows: Sequence[dict[str, Any]], row_links: bool = True, table_id_: str | None = None
) -> dbc.Table:
    """A responsive table; with ``row_links`` the first column's stretched link makes each row clickable."""
    head = html.Thead(html.Tr([html.Th(c.header, className=c.class_name or None, scope="col") for c in columns]))
    body = html.Tbody(
        [html.Tr([html.Td(c.cell(row), className=c.class_name or None) for c in columns]) for row in rows]
    )
    return dbc.Table(
        [head, body],
        hover=True,
        responsive=True,
        id=table_id_ or None,
        class_name="incdb-table" + (" incdb-row-links" if row_links else ""),
    )


@dataclass
class TableState:
    search: str = ""
    sort: str = ""
    page: int = 1


@dataclass
class TableData:
    content: Child
    total: int
    page: int
    pages: int
    per_page: int
    noun: str = "row"


@dataclass(frozen=True)
class Source:
    """How one kind of paged table reads its data and draws it."""

    draw: Callable[[Session, Any, Mapping[str, Any], TableState], TableData]
    sorts: tuple[tuple[str, str], ...] = ()  # (value, label); the first is the default
    searchable: bool = False
    search_placeholder: str = "Search"
    empty: Callable[[Mapping[str, Any]], Child] = field(default=lambda context: empty_state("Nothing here yet."))


SOURCES: dict[str, Source] = {}


def _no_match(search: str, noun: str) -> Child:
    return empty_state(
        f"No {noun} match “{search}”.",
        "Check the spelling or try a shorter part of the name.",
        class_name="incdb-no-results",
    )


def _draw(source: Source, context: Mapping[str, Any], state: TableState) -> TableData:
    with session_scope() as session:
        user = viewer()
        data = source.draw(session, user, context, state)
        if data.total and state.page > data.pages:  # a stale or hand-edited URL: show the last page instead
            state.page = data.pages
            data = source.draw(session, user, context, state)
    if not data.total:
        data.content = _no_match(state.search, data.noun + "s") if state.search.strip() else source.empty(context)
    return data


def _summary(data: TableData) -> str:
    if not data.total:
        return ""
    first = (data.page - 1) * data.per_page + 1
    last = min(data.total, data.page * data.per_page)
    if data.pages == 1:
        return f"{plural(data.total, data.noun)}"
    return f"{first:,}–{last:,} of {plural(data.total, data.noun)}"


def _params(source: Source, state: TableState, prefix: str) -> dict[str, str | None]:
    """The table's query parameters; defaults are left out so plain URLs stay plain."""
    default_sort = source.sorts[0][0] if source.sorts else ""
    return {
        f"{prefix}q": state.search.strip() or None,
        f"{prefix}sort": state.sort if state.sort and state.sort != default_sort else None,
        f"{prefix}page": str(state.page) if state.page > 1 else None,
    }


def paged_table(
    name: str, source_name: str, query: Mapping[str, Any], context: Mapping[str, Any] | None = None, prefix: str = ""
) -> html.Div:
    """A paged table named ``name`` (unique on its page); its state is read from ``query`` (``q``, ``sort``,
    ``page``, each with ``prefix``)."""
    source = SOURCES[source_name]
    sort_values = [v for v, _ in source.sorts]
    sort = arg(query, prefix + "sort")
    state = TableState(
        search=arg(query, prefix + "q")[:200] if source.searchable else "",
        sort=sort if sort in sort_values else (sort_values[0] if sort_values else ""),
        page=int_arg(query, prefix + "page"),
    )
    context = dict(context or {})
    data = _draw(source, context, state)
    controls = []
    # Hidden rather than absent: the pattern-matching callback needs every input to exist.
    controls.append(
        dbc.Input(
            id=table_id("search", name),
            type="search",
            value=state.search,
            debounce=250,
            autocomplete="off",
            placeholder=source.search_placeholder,
            className="incdb-table-search",
            style=None if source.searchable else {"display": "none"},
        )
    )
    controls.append(
        dbc.InputGroup(
            [
                group_label("Sort by", table_id("sort", name)),
                dbc.Select(
                    id=table_id("sort", name),
                    value=state.sort,
                    options=[{"label": label, "value": value} for value, label in source.sorts],
                ),
            ],
            className="incdb-table-sort",
            style=None if len(source.sorts) > 1 else {"display": "none"},
        )
    )
    return html.Div(
        [
            html.Div(controls, className="incdb-table-controls"),
            html.Div(
                _summary(data), id=table_id("summary", name), className="incdb-table-summary", **{"aria-live": "polite"}
            ),
            dcc.Loading(
                html.Div(data.content, id=table_id("body", name), className="incdb-table-body"),
                delay_show=300,
                type="dot",
            ),
            dbc.Pagination(
                id=table_id("pagination", name),
                active_page=data.page,
                max_value=data.pages,
                fully_expanded=False,
                previous_next=True,
                first_last=True,
                class_name="incdb-pagination",
                style=None if data.pages > 1 else {"display": "none"},
            ),
            dcc.Store(id=table_id("context", name), data={"source": source_name, "prefix": prefix, **context}),
            dcc.Store(id=table_id("query", name), data=None),
        ],
        className="incdb-paged-table",
        id=f"table-{name}",
    )


# What a table's context Store may hold (see paged_table): the browser sends it back with every change, so a
# forged one is cut down to these keys and types before a source reads it.
CONTEXT_TEXT = ("source", "prefix", "term", "movie", "collection", "uuid")


def clean_context(context: Any) -> dict[str, Any] | None:
    """The usable part of a table context from the browser; None when it names no source."""
    if not isinstance(context, dict) or not isinstance(context.get("source"), str):
        return None
    clean: dict[str, Any] = {k: context[k] for k in CONTEXT_TEXT if isinstance(context.get(k), str)}
    hide = context.get("hide")
    if isinstance(hide, list):
        clean["hide"] = [h for h in hide if isinstance(h, str)]
    per_page = context.get("per_page")
    if isinstance(per_page, int) and not isinstance(per_page, bool):
        clean["per_page"] = queries.clamp_page(1, per_page)[1]
    return clean


# ----------------------------------------------------------------------------------------------- sources


def _hidden(context: Mapping[str, Any]) -> set[str]:
    return set(context.get("hide") or ())


def _visible_columns(columns: Sequence[Column], context: Mapping[str, Any]) -> list[Column]:
    hidden = _hidden(context)
    return [c for c in columns if not c.key or c.key not in hidden]


def _number(value: int) -> str:
    return f"{value:,}"


TERM_SORTS = {"name": ("name", False), "components": ("components", True), "movies": ("movies", True)}


def draw_terms(session: Session, user: Any, context: Mapping[str, Any], state: TableState) -> TableData:
    key, descending = TERM_SORTS.get(state.sort, TERM_SORTS["name"])
    page = queries.list_terms(
        session,
        user,
        search=state.search,
        sort=key,
        descending=descending,
        page=state.page,
        per_page=context.get("per_page", queries.DEFAULT_PER_PAGE),
    )
    columns = [
        Column(
            "Term",
            lambda t: with_thumbnail(term_thumbnail(t), link(t["name"], f"/terms/{t['slug']}", stretched=True)),
            "incdb-col-main",
        ),
        Column("Movies", lambda t: _number(t["n_movies"]), "text-end"),
        Column("Components", lambda t: _number(t["n_components"]), "text-end"),
        Column("Mean r", lambda t: fmt_r(t["mean_r"]), "text-end incdb-num"),
    ]
    return TableData(
        data_table(columns, page.items, table_id_="terms-table"),
        page.total,
        page.page,
        page.pages,
        page.per_page,
        "term",
    )


MOVIE_SORTS = ("title", "newest", "components")


def draw_movies(session: Session, user: Any, context: Mapping[str, Any], state: TableState) -> TableData:
    page = queries.list_movies(
        session,
        user,
        search=state.search,
        sort=state.sort or "title",
        page=state.page,
        per_page=context.get("per_page", queries.DEFAULT_PER_PAGE),
    )
    columns = [
        Column("Movie", lambda m: link(m["title"], f"/movies/{m['slug']}", stretched=True), "incdb-col-main"),
        Column("Year", lambda m: m["year"] or "–", "text-end"),
        Column("Collections", lambda m: _number(m["n_collections"]), "text-end"),
        Column("Components", lambda m: _number(m["n_components"]), "text-end"),
        Column("Last added", lambda m: fmt_date(m["latest"]), "text-end text-nowrap"),
    ]
    return TableData(
        data_table(columns, page.items, table_id_="movies-table"),
        page.total,
        page.page,
        page.pages,
        page.per_page,
        "movie",
    )


def component_name(source_file: str, volume: int) -> str:
    """A component as a curator names it: its file's own name and its number in that file, as MELODIC numbers
    its components (IC 1 is the first volume), e.g. ``melodic_IC.nii.gz · IC 3``.

    ``source_file`` is the path inside the upload (``study.gica.zip/study.gica/groupmelodic.ica/melodic_IC.nii.gz``),
    which pages show in full where there is room (the component's details, a list row's tooltip).
    """
    return f"{source_file.rsplit('/', 1)[-1] or source_file} · IC {volume}"


def _component_name(c: dict[str, Any]) -> Child:
    name = link(component_name(c["source_file"], c["volume"]), f"/components/{c['uuid']}", stretched=True)
    name.title = c["source_file"]
    return [name, *row_badges(c)]


def fmt_q(q: float | None) -> str:
    """A q (or p) value: three decimals, or scientific notation below 0.001; a dash when there is none."""
    if q is None:
        return "–"
    return f"{q:.3f}" if q >= 0.001 else f"{q:.1e}"


def _qc(c: dict[str, Any]) -> Child:
    warnings = c.get("qc_warnings") or []
    if not warnings:
        return html.Span("ok", className="text-success small")
    return dbc.Badge(plural(len(warnings), "warning"), color="warning", text_color="dark", title="; ".join(warnings))


COMPONENT_COLUMNS = (
    Column("Component", lambda c: with_thumbnail(component_thumbnail(c), _component_name(c)), "incdb-col-main"),
    Column("Movie", lambda c: link(c["movie"], f"/movies/{c['movie_slug']}"), key="movie"),
    Column("Collection", lambda c: c["collection"], "incdb-col-muted", key="collection"),
    Column(
        "Best term",
        lambda c: (
            link(c["best_term"], f"/terms/{c['best_term_slug']}")
            if c.get("best_term_slug")
            else (c["best_term"] or "–")
        ),
        key="term",
    ),
    Column("r", lambda c: fmt_r(c["best_r"]), "text-end incdb-num"),
    Column(
        html.Abbr("ISC", title="leave-one-out inter-subject correlation"),
        lambda c: fmt_r(c.get("isc")),
        "text-end incdb-num",
        key="isc",
    ),
    Column(
        html.Span("q", title="Benjamini-Hochberg q of the ISC"),
        lambda c: fmt_q(c.get("isc_q")),
        "text-end incdb-num",
        key="isc",
    ),
    Column("QC", _qc, "text-end"),
)


def draw_components(session: Session, user: Any, context: Mapping[str, Any], state: TableState) -> TableData:
    page = queries.list_components(
        session,
        user,
        term_slug=context.get("term"),
        movie_slug=context.get("movie"),
        collection_slug=context.get("collection"),
        sort=state.sort or "r",
        page=state.page,
        per_page=context.get("per_page", queries.DEFAULT_PER_PAGE),
    )
    return TableData(
        data_table(_visible_columns(COMPONENT_COLUMNS, context), page.items, table_id_="components-table"),
        page.total,
        page.page,
        page.pages,
        page.per_page,
        "component",
    )


DECODING_SORTS = ("rank", "abs", "name")


def _r_bar(r: float) -> Child:
    width = f"{min(1.0, abs(r)) * 100:.1f}%"
    return html.Div(
        [
            html.Span(fmt_r(r), className="incdb-num"),
            html.Span(
                html.Span(className="incdb-rbar-fill" + (" negative" if r < 0 else ""), style={"width": width}),
                className="incdb-rbar",
            ),
        ],
        className="incdb-rcell",
    )


def draw_decodings(session: Session, user: Any, context: Mapping[str, Any], state: TableState) -> TableData:
    comp = queries.get_visible_component(session, user, str(context.get("uuid", "")))
    rows = queries.full_decoding_profile(session, comp) if comp is not None else []
    if state.search.strip():
        needle = state.search.strip().lower()
        rows = [r for r in rows if needle in r["term"].lower()]
    if state.sort == "abs":
        rows = sorted(rows, key=lambda r: (-abs(r["r"]), r["rank"]))
    elif state.sort == "name":
        rows = sorted(rows, key=lambda r: r["term"].lower())
    page, per_page = queries.clamp_page(state.page, context.get("per_page", queries.DEFAULT_PER_PAGE))
    result = queries.Page(rows[(page - 1) * per_page : page * per_page], page, per_page, len(rows))
    columns = [
        Column("Rank", lambda d: d["rank"], "text-end incdb-col-rank"),
        Column(
            "Term",
            lambda d: link(d["term"], f"/terms/{d['slug']}", stretched=True) if d.get("slug") else d["term"],
            "incdb-col-main",
        ),
        Column("r", lambda d: _r_bar(d["r"]), "incdb-col-r"),
    ]
    return TableData(
        data_table(columns, result.items, table_id_="decodings-table"),
        result.total,
        result.page,
        result.pages,
        result.per_page,
        "term",
    )


def _no_components(context: Mapping[str, Any]) -> Child:
    return empty_state(
        "No components yet.",
        "Nothing you can see has been decoded here so far. Contributors can upload ICA components "
        "of a movie and INcDb decodes them automatically.",
        links=(("Contribute data", "/contribute"), ("Browse movies", "/movies")),
    )


SOURCES.update(
    {
        "terms": Source(
            draw_terms,
            sorts=(("name", "Name (A–Z)"), ("components", "Most components"), ("movies", "Most movies")),
            searchable=True,
            search_placeholder="Filter terms, e.g. visual",
            empty=lambda context: empty_state("No terms yet.", "No reference set is active."),
        ),
        "movies": Source(
            draw_movies,
            sorts=(("title", "Title (A–Z)"), ("newest", "Newest"), ("components", "Most components")),
            searchable=True,
            search_placeholder="Filter movies by title",
            empty=lambda context: empty_state(
                "No movies yet.",
                "Movies appear here once a contributor has uploaded a collection.",
                links=(("Contribute data", "/contribute"),),
            ),
        ),
        "components": Source(
            draw_components,
            sorts=(("r", "Highest r"), ("isc", "Highest ISC"), ("file", "File and volume")),
            empty=_no_components,
        ),
        "decodings": Source(
            draw_decodings,
            sorts=(("rank", "Highest r"), ("abs", "Strongest |r|"), ("name", "Term (A–Z)")),
            searchable=True,
            search_placeholder="Find a term in the profile",
            empty=lambda context: empty_state("This component has not been decoded yet."),
        ),
    }
)
