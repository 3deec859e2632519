"""Figures and panels of the movie's timeline: annotation tracks, component time courses, power spectra, the
temporal decoding table and the label chooser. Every label and name from a file or a person is escaped before it
reaches Plotly (which renders a subset of HTML in labels and hover text).

A page gets what a screen can show, whatever the size of the study: a heatmap of at most
``store.timeline.MAX_COLUMNS`` time columns (finer columns are fetched for the range in view when the visitor
zooms), traces of at most ``store.timeline.MAX_DISPLAY_POINTS`` points that keep every minimum and maximum, and
annotation tracks as merged intervals, :data:`store.timeline.DEFAULT_TRACKS` of them until the visitor chooses
(at most ``MAX_TRACKS``). The chooser says how many labels are drawn and how many are not; the choice is kept in
the page address (``labels``). Full resolution stays in the CSV downloads.
"""

from __future__ import annotations

import html as html_text
import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Patch, dcc, html

from dashboard.components.charts import FONT, GRAPH, link_key, nav_graph
from dashboard.components.common import empty_state
from pipeline.synchrony import reads as synchrony_reads
from pipeline.temporal.decoding import label_regressors, run_frame_times
from store import queries
from store import timeline as store
from store.timeline import MAX_COLUMNS, MAX_DISPLAY_POINTS, MAX_TRACKS, decimate, envelope, heatmap_columns

TRACK_COLORS = ("#e4572e", "#2e86de", "#17b890", "#f2a541", "#8e44ad", "#7f8c8d", "#c0392b", "#16a085")
COURSE = "course-graph"
COURSE_DATA = "course-data"
COURSE_LABEL = "course-label"
COURSE_TRACKS = "course-tracks"
COURSE_NOTE = "course-tracks-note"
TIMELINE = "timeline"  # the movie timeline's graph: {"type": GRAPH, "graph": TIMELINE}
TIMELINE_STATE = "timeline-state"
TIMELINE_TRACKS = "timeline-labels"
TIMELINE_NOTE = "timeline-labels-note"
TIMELINE_READOUT = "timeline-readout"
LABELS_PARAM = "labels"  # the query parameter of the chosen labels: a JSON list of "set id|label"
TIMELINE_VIEW = "timeline-view"  # the switch "activity / synchrony"
TIMELINE_VIEW_NOTE = "timeline-view-note"
TIMELINE_MOMENT = "timeline-moment"  # a moment's button: {"type": TIMELINE_MOMENT, "index": its movie time}
VIEW_PARAM = "view"  # the query parameter of the switch; activity (the default) leaves none
VIEWS = ("activity", "synchrony")
MAX_MOMENTS_LISTED = 100
FINE = 1  # index of the heatmap trace that holds the zoomed range's finer columns (0: the whole movie)


def esc(text: Any) -> str:
    return html_text.escape(str(text), quote=False)


def label_href(label: str) -> str:
    """The path of a label's page: the whole label percent-encoded (``/``, ``?``, ``#``, ``%`` included), which
    ``dashboard.pages.label`` decodes once."""
    return f"/labels/{quote(label, safe='')}"


def movie_clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _time_axis(span: tuple[float, float]) -> dict[str, Any]:
    """A movie-time x axis labelled hh:mm:ss at about eight ticks."""
    start, end = span
    step = max(1.0, (end - start) / 8)
    for nice in (10, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if nice >= step:
            step = nice
            break
    ticks = np.arange(np.floor(start / step) * step, end + step, step)
    return {"tickvals": ticks.tolist(), "ticktext": [movie_clock(t) for t in ticks], "title": "movie time"}


def _origin(c: dict[str, Any]) -> str:
    """Where a heatmap row's component comes from: its collection and the file's own name."""
    source = str(c.get("source_file") or "")
    return esc(f"{c['collection']} · {source.rsplit('/', 1)[-1]}" if source else c["collection"])


def row_names(courses: list[dict[str, Any]]) -> list[str]:
    """The heatmap's row of each component: its number in its file as MELODIC numbers them (IC 1 is the first
    volume) and its best term, ``IC 3 · auditory``; the collection follows where two rows would read the same
    (rows are the heatmap's categories and the keys of its links, so each must be unique)."""
    names = [f"IC {c['ic']} · {c['term']}" for c in courses]
    counts = Counter(names)
    names = [f"{n} ({c['collection']})" if counts[n] > 1 else n for n, c in zip(names, courses)]
    seen: dict[str, int] = {}
    unique = []
    for n in names:  # two files of one collection with the same term and number
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n} [{seen[n]}]")
    return [esc(n) for n in unique]


# --- the label chooser -------------------------------------------------------------------------------------------


def choice_value(set_id: int, label: str) -> str:
    return f"{set_id}|{label}"


def parse_choices(values: Any) -> list[tuple[int, str]] | None:
    """(set id, label) pairs of a chooser's value (a list of ``"set id|label"``), at most ``MAX_TRACKS``; None
    when the value is not such a list (then the panel keeps its defaults)."""
    if not isinstance(values, list | tuple):
        return None
    pairs = []
    for value in values:
        if not isinstance(value, str) or "|" not in value or len(value) > 400:
            continue
        set_id, label = value.split("|", 1)
        if set_id.isdigit() and len(set_id) < 10 and label:
            pairs.append((int(set_id), label))
    return list(dict.fromkeys(pairs))[:MAX_TRACKS]


def choices_from_query(query: Mapping[str, Any] | None) -> list[tuple[int, str]] | None:
    """The labels chosen in the page address (``labels``: a JSON list of ``"set id|label"``), or None."""
    text = (query or {}).get(LABELS_PARAM)
    if isinstance(text, list | tuple):
        text = text[0] if text else None
    if not isinstance(text, str) or len(text) > 20_000:
        return None
    try:
        return parse_choices(json.loads(text))
    except ValueError:
        return None


def view_from_query(query: Mapping[str, Any] | None) -> str:
    """The Timeline's view in the page address (``view``): ``synchrony`` or, for anything else, ``activity``."""
    text = (query or {}).get(VIEW_PARAM)
    if isinstance(text, list | tuple):
        text = text[0] if text else None
    return text if text in VIEWS else VIEWS[0]


def chooser_note(shown: int, total: int, asked: int | None = None) -> str:
    """``N of M labels shown``, saying how many are hidden and how to draw them (never a silent cut)."""
    text = f"{shown} of {total} labels shown"
    if total > shown:
        text += f"; {total - shown} hidden: search the box to draw any of them (at most {MAX_TRACKS} at once)"
    if asked is not None and asked > shown:
        text += f". {asked - shown} of the labels chosen are not drawn: at most {MAX_TRACKS} tracks fit"
    return text + "."


MAX_OPTIONS = 100  # labels listed in the chooser at once besides the chosen ones; a search finds the others


def label_options(
    choices: list[dict[str, Any]],
    chosen: list[tuple[int, str]],
    ranked: list[tuple[int, str]],
    search: Any = None,
    detail: Mapping[tuple[int, str], str] | None = None,
) -> list[dict]:
    """The chooser's options: the labels chosen, and at most :data:`MAX_OPTIONS` others (those whose text holds
    ``search``, else the first of ``ranked``), so that the page's size does not grow with the movie's labels.

    Options are grouped by annotation set (sets by name, labels sorted; each label prefixed with its set when the
    movie has several, so a search finds a set's labels too; Dash's dropdown lists the chosen options first, so
    the set is in each option rather than in a heading), each with what makes it worth drawing (``detail``, e.g.
    its q for a component; else its events and how many components follow it)."""
    by_key = {(c["set_id"], c["label"]): c for c in choices}
    several = len({c["set_id"] for c in choices}) > 1

    def text(c: dict[str, Any]) -> str:
        return f"{c['set']} › {c['label']}" if several else c["label"]

    keep = [p for p in chosen if p in by_key]
    needle = search.strip().casefold() if isinstance(search, str) else ""
    if needle:
        pool = [k for k, c in by_key.items() if needle in text(c).casefold()]
    else:
        pool = [p for p in ranked if p in by_key] + list(by_key)
    kept = set(keep)
    listed = keep + [k for k in dict.fromkeys(pool) if k not in kept][:MAX_OPTIONS]
    options = []
    for key in sorted(listed, key=lambda k: (by_key[k]["set"], k[0], k[1])):
        c = by_key[key]
        extra = (detail or {}).get(key)
        if extra is None:
            extra = f"{c['events']} events" + (f", followed by {c['following']}" if c.get("following") else "")
        options.append({"label": f"{text(c)} ({extra})", "value": choice_value(*key)})
    return options


def chooser(ident: str, note_id: str, options: list[dict], value: list[str], note: str, total: int) -> html.Div:
    return html.Div(
        [
            dcc.Dropdown(
                id=ident,
                options=options,
                value=value,
                multi=True,
                searchable=True,
                clearable=True,
                debounce=True,
                placeholder=f"Search {total} labels to draw…",
                className="incdb-label-chooser",
            ),
            html.P(note, id=note_id, className="text-muted small mt-1 mb-2", **{"aria-live": "polite"}),
        ]
    )


def movie_label_options(session, user, slug: str, chosen: Any, search: Any) -> list[dict] | None:
    """The movie chooser's options for a search (None when the movie is not visible)."""
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    choices = store.label_choices(session, user, movie)
    ranked = store.movie_default_tracks(choices, n=len(choices))
    return label_options(choices, parse_choices(chosen) or [], ranked, search)


def course_label_options(session, user, uuid: str, chosen: Any, search: Any) -> list[dict] | None:
    """A component chooser's options for a search (None when the component is not visible)."""
    comp = queries.get_visible_component(session, user, uuid)
    if comp is None:
        return None
    rows = store.component_temporal(session, user, uuid) or []
    choices = store.label_choices(session, user, comp.collection.movie)
    ranked = store.component_default_tracks(rows, n=len(rows))
    return label_options(choices, parse_choices(chosen) or [], ranked, search, _q_detail(rows))


# --- annotation tracks ---------------------------------------------------------------------------------------------


def track_names(tracks: list[dict[str, Any]]) -> list[str]:
    sets = {t["set_id"] for t in tracks}
    return [t["label"] if len(sets) == 1 else f"{t['set']}: {t['label']}" for t in tracks]


def _track_traces(tracks: list[dict[str, Any]], yaxis: str = "y") -> list[go.Bar]:
    """A horizontal bar per merged interval, a row per track (rows numbered; the axis names them)."""
    traces = []
    for i, (name, track) in enumerate(zip(track_names(tracks), tracks)):
        starts = np.array([iv[0] for iv in track["intervals"]], dtype=float)
        widths = np.array([max(iv[1] - iv[0], 0.5) for iv in track["intervals"]], dtype=float)
        traces.append(
            go.Bar(
                base=np.round(starts, 2).tolist(),
                x=np.round(widths, 2).tolist(),
                y=[i] * len(starts),
                orientation="h",
                name=esc(name),
                marker={"color": TRACK_COLORS[i % len(TRACK_COLORS)]},
                yaxis=yaxis,
                showlegend=False,
                hovertemplate="%{base:.0f} s + %{x:.0f} s<extra>%{fullData.name}</extra>",
            )
        )
    return traces


def _track_axis(tracks: list[dict[str, Any]], domain: list[float]) -> dict[str, Any]:
    return {
        "domain": domain,
        "automargin": True,
        "tickvals": list(range(len(tracks))),
        "ticktext": [esc(n) for n in track_names(tracks)],
        "range": [len(tracks) - 0.5, -0.5],
        "fixedrange": True,
    }


# --- the movie timeline --------------------------------------------------------------------------------------------


def _span(tracks: list[dict[str, Any]], courses: list[dict[str, Any]]) -> tuple[float, float]:
    ends = [iv[1] for t in tracks for iv in t["intervals"][-1:]]
    span = store.courses_span(courses)
    values = ends + (list(span) if span else []) + [0.0]
    return 0.0, max(values) or 60.0


def _heatmap_z(z: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else v for v in row] for row in np.round(z, 2).tolist()]


def fine_heatmap_patch(courses: list[dict[str, Any]], start: float, end: float, span: tuple[float, float]) -> Patch:
    """The zoomed range's finer columns (at most ``MAX_COLUMNS``), as an update of the figure's second heatmap;
    a range that shows the whole movie hides it again."""
    patch = Patch()
    if start <= span[0] and end >= span[1]:
        patch["data"][FINE]["visible"] = False
        return patch
    grid, z = heatmap_columns(courses, start, end, MAX_COLUMNS)
    patch["data"][FINE].update(
        {"x": np.round(grid, 2).tolist(), "y": row_names(courses), "z": _heatmap_z(z), "visible": True}
    )
    return patch


def _heatmap(courses: list[dict[str, Any]], span: tuple[float, float] | None, visible: bool = True) -> go.Heatmap:
    grid, z = heatmap_columns(courses, *span, MAX_COLUMNS) if span else (np.zeros(0), np.zeros((0, 0)))
    return go.Heatmap(
        x=np.round(grid, 2).tolist(),
        y=row_names(courses) if span else [],
        z=_heatmap_z(z),
        colorscale="RdBu_r",
        zmid=0,
        zmin=-3,
        zmax=3,
        yaxis="y",
        visible=visible,
        showscale=visible,
        colorbar={"title": "z", "len": 0.55, "y": 0.28},
        hovertemplate="%{y}<br>movie time %{x:.0f} s<br>z = %{z:.2f}<extra></extra>",
    )


# --- synchrony over movie time -----------------------------------------------------------------------------------


def _window_text(windows: list[float]) -> str:
    return " and ".join(f"{w:g} s" for w in windows)


def movie_isc(session, user, slug: str, courses: list[dict[str, Any]]) -> dict[str, Any]:
    """The windowed ISC of the movie's components on one movie-time grid, a row per course in the order of
    ``courses`` (rows without ISC are empty): ``{"grid", "z" (rows x columns, NaN where none), "windows" (the
    window lengths stored, s), "note"}``; ``grid`` is empty, and ``note`` says why, when there is none."""
    found = synchrony_reads.movie_windowed(session, user, slug, MAX_COLUMNS) or []
    found = [f for f in found if f["movie_time_s"]]
    if not found:
        note = "No synchrony over time: this movie has no component time courses."
        if courses:
            why = synchrony_reads.component_isc(session, user, courses[0]["uuid"])
            note = (why or {}).get("note") or "No synchrony over time has been computed for this movie's collections."
        return {"grid": np.zeros(0), "z": np.zeros((len(courses), 0)), "windows": [], "note": note}
    times = [np.array([np.nan if t is None else t for t in f["movie_time_s"]], dtype=float) for f in found]
    grid = np.unique(np.concatenate(times))
    grid = grid[np.isfinite(grid)]
    if len(grid) > MAX_COLUMNS:  # several collections on different grids: every k-th time
        grid = grid[:: math.ceil(len(grid) / MAX_COLUMNS)]
    where = {u: (i, j) for i, f in enumerate(found) for j, u in enumerate(f["components"])}
    z = np.full((len(courses), len(grid)), np.nan)
    for row, course in enumerate(courses):
        if course["uuid"] not in where:
            continue
        i, j = where[course["uuid"]]
        z[row] = _nearest(times[i], [np.nan if v[j] is None else v[j] for v in found[i]["values"]], grid)
    windows = sorted({float(f["window_s"]) for f in found if f["window_s"] is not None})
    return {"grid": grid, "z": z, "windows": windows, "note": ""}


def _nearest(t: np.ndarray, values: list[float], grid: np.ndarray) -> np.ndarray:
    """``values`` at times ``t`` read at each time of ``grid`` from the nearest window, NaN where no window is
    within half a step (between runs, outside the collection)."""
    order = np.argsort(t, kind="stable")
    t, v = t[order], np.asarray(values, dtype=float)[order]
    if not len(t) or not len(grid):
        return np.full(len(grid), np.nan)
    right = np.clip(np.searchsorted(t, grid), 0, len(t) - 1)
    left = np.clip(right - 1, 0, len(t) - 1)
    pick = np.where(np.abs(grid - t[left]) <= np.abs(t[right] - grid), left, right)
    steps = [np.median(np.diff(a)) for a in (t, grid) if len(a) > 1]
    tolerance = 0.51 * max(steps) if steps else 0.0
    return np.where(np.abs(t[pick] - grid) <= tolerance, v[pick], np.nan)


def _isc_heatmap(courses: list[dict[str, Any]], isc: dict[str, Any] | None, visible: bool = True) -> go.Heatmap:
    z = np.asarray(isc["z"], dtype=float) if isc else np.zeros((0, 0))
    top = float(np.nanmax(np.abs(z))) if z.size and np.isfinite(z).any() else 1.0
    top = max(0.1, min(1.0, math.ceil(top * 10) / 10))
    return go.Heatmap(
        x=np.round(isc["grid"], 2).tolist() if isc else [],
        y=row_names(courses) if isc else [],
        z=_heatmap_z(z),
        colorscale="RdBu_r",
        zmid=0,
        zmin=-top,
        zmax=top,
        yaxis="y",
        visible=visible,
        showscale=visible,
        colorbar={"title": {"text": "ISC (r)"}, "len": 0.55, "y": 0.28},
        hovertemplate="%{y}<br>window centred at %{x:.0f} s<br>ISC r = %{z:.2f}<extra></extra>",
    )


def view_note(view: str, courses: list[dict[str, Any]], isc: dict[str, Any] | None) -> str:
    """What the heatmap shows in each view, with the ISC's window length (and that it is the only one stored)."""
    if view != "synchrony":
        return f"Activity: {len(courses)} component time courses (mean over subjects, z-scored)."
    if not isc or not len(isc["grid"]):
        return "Synchrony: " + ((isc or {}).get("note") or "no windowed ISC for this movie.")
    windows = isc["windows"]
    stored = (
        "the only window length stored, so there is no other to choose"
        if len(windows) == 1
        else "the window length each collection stores"
    )
    rows = int(np.isfinite(isc["z"]).any(axis=1).sum())
    return (
        f"Synchrony: leave-one-out ISC of {rows} of {len(courses)} components in sliding {_window_text(windows)} "
        f"windows ({stored}), at the movie time of each window's centre."
    )


def timeline_figure(
    tracks: list[dict[str, Any]], courses: list[dict[str, Any]], isc: dict[str, Any] | None = None
) -> go.Figure:
    """A heatmap of the components' z-scored mean time courses (a row per component, :func:`row_names`,
    grouped by best term; at most ``MAX_COLUMNS`` columns, each the mean of its bin) below the annotation tracks
    (a row per label, merged intervals), sharing one movie-time axis with a range slider. A second heatmap,
    empty until the visitor zooms, takes the finer columns of the range in view (:func:`fine_heatmap_patch`)."""
    span = _span(tracks, courses)
    fig = go.Figure()
    if isc is not None:  # the synchrony view: windowed ISC instead of the mean time courses
        fig.add_trace(_isc_heatmap(courses, isc if courses and len(isc["grid"]) else None))
    else:
        fig.add_trace(_heatmap(courses, span if courses else None))
    fig.add_trace(_heatmap(courses, None, visible=False))
    for trace in _track_traces(tracks, "y2"):
        fig.add_trace(trace)
    height = max(360, 24 * len(tracks) + (16 * len(courses) if courses else 0) + 160)
    # The tracks take about 24 px each of the plot's height (the rest, less the slider, is the heatmap's).
    track_share = min(0.6, (24 * len(tracks) + 12) / (height - 120)) if courses and tracks else float(bool(tracks))
    fig.update_layout(
        font=FONT,
        barmode="overlay",
        hovermode="closest",
        uirevision="timeline",  # a zoom stays when the finer columns arrive
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        height=height,
        # The axis, a reset (double click) and the slider stay within the film: Plotly's own range would pad the
        # bars by 5 % on each side, so the slider and a reset showed minutes before 0:00:00.
        xaxis={
            **_time_axis(span),
            "rangeslider": {"visible": True, "thickness": 0.06, "range": list(span)},
            "range": list(span),
            "minallowed": span[0],
            "maxallowed": span[1],
        },
        yaxis={
            "domain": [0, max(0.05, 1 - track_share - 0.04)] if courses else [0, 0.01],
            "automargin": True,
            "autorange": "reversed",
            "showticklabels": bool(courses),
        },
        yaxis2=_track_axis(tracks, [1 - track_share, 1] if tracks else [0.99, 1]),
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def movie_timeline(
    session, user, slug: str, chosen: list[tuple[int, str]] | None = None, view: str = "activity"
) -> dict[str, Any] | None:
    """What the movie's Timeline draws (None when the movie is not visible): ``figure`` (the mean time courses,
    or the windowed ISC for ``view`` ``synchrony``), the chooser's ``note`` and ``value``, its ``choices``, the
    ``courses``, the ``view_note`` and the ``state`` its callbacks keep (slug, span, default labels, each row's
    origin)."""
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    choices = store.label_choices(session, user, movie)
    default = store.movie_default_tracks(choices)
    pairs = default if chosen is None else chosen
    courses = store.movie_courses(session, user, movie)
    tracks = store.track_intervals(session, movie, pairs, gap=_merge_gap(_span([], courses)))
    ranked = store.movie_default_tracks(choices, n=len(choices))
    view = view if view in VIEWS else VIEWS[0]
    isc = movie_isc(session, user, slug, courses) if view == "synchrony" else None
    return {
        "figure": timeline_figure(tracks, courses, isc),
        "view": view,
        "view_note": view_note(view, courses, isc),
        "options": label_options(choices, [(t["set_id"], t["label"]) for t in tracks], ranked),
        "note": chooser_note(len(tracks), len(choices), len(pairs) if chosen is not None else None),
        "value": [choice_value(t["set_id"], t["label"]) for t in tracks],
        "choices": choices,
        "courses": courses,
        "state": {
            "slug": slug,
            "span": list(_span(tracks, courses)),
            "default": [choice_value(*p) for p in default],
            "param": LABELS_PARAM,
            "origins": {row: _origin(c) for row, c in zip(row_names(courses), courses)},
        },
    }


def _merge_gap(span: tuple[float, float]) -> float:
    """Events closer than a quarter of a heatmap column are merged into one interval (no screen separates them)."""
    return max(0.0, (span[1] - span[0]) / (4 * MAX_COLUMNS))


def moments_list(session, user, slug: str) -> html.Div:
    """The Timeline's "Moments of synchrony": the movie times where the components' mean windowed ISC rose above
    its phase-randomised 95th percentile, with that mean and the labels active then; each time a button that
    zooms the timeline there. Without ISC it says why."""
    found = synchrony_reads.movie_synchrony(session, user, slug) or {"moments": []}
    moments = [m for m in found["moments"] if m["time_s"] is not None]
    heading = html.H3("Moments of synchrony", className="h6 mt-4")
    if not moments:
        windowed = synchrony_reads.movie_windowed(session, user, slug, 1) or []
        if any(w["movie_time_s"] for w in windowed):
            why = (
                "At no movie time did the components' mean windowed ISC rise above its phase-randomised 95th "
                "percentile."
            )
        else:
            courses = store.movie_courses(session, user, queries.get_visible_movie(session, user, slug))
            why = movie_isc(session, user, slug, courses[:1])["note"]
        return html.Div([heading, empty_state("No moments of synchrony", why)], id="timeline-moments")
    several = len({m["collection"] for m in moments}) > 1
    rows = [
        html.Tr(
            [
                html.Td(
                    html.Button(
                        movie_clock(m["time_s"]),
                        id={"type": TIMELINE_MOMENT, "index": round(float(m["time_s"]), 2)},
                        className="btn btn-link btn-sm p-0 incdb-moment",
                        title="Zoom the timeline to this moment",
                    )
                ),
                html.Td("–" if m["value"] is None else f"{m['value']:.2f}"),
                html.Td(", ".join(m["labels"]) if m["labels"] else "no label", className="text-break"),
            ]
            + ([html.Td(m["collection"])] if several else [])
        )
        for m in moments[:MAX_MOMENTS_LISTED]
    ]
    head = ["Movie time", "Mean ISC (r)", "Labels active then"] + (["Collection"] if several else [])
    return html.Div(
        [
            heading,
            dbc.Table(
                [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                size="sm",
                hover=True,
                responsive=True,
                className="incdb-table",
            ),
            html.P(
                "Movie times where the components' mean windowed ISC rises above its phase-randomised 95th "
                "percentile. Click a time to zoom the timeline there."
                + (
                    f" The first {MAX_MOMENTS_LISTED} of {len(moments)} are listed."
                    if len(moments) > MAX_MOMENTS_LISTED
                    else ""
                ),
                className="text-muted small",
            ),
        ],
        id="timeline-moments",
    )


def timeline_panel(
    session, user, slug: str, chosen: list[tuple[int, str]] | None = None, view: str = "activity"
) -> html.Div | None:
    """The movie page's Timeline tab: the label chooser, the switch "activity / synchrony", the figure, a line
    naming what the pointer is over (the component, the movie time and the labels drawn at that time) and the
    moments of synchrony."""
    found = movie_timeline(session, user, slug, chosen, view)
    if found is None:
        return None
    choices, courses = found["choices"], found["courses"]
    if not choices and not courses:
        return empty_state(
            "No timeline yet",
            "This movie has no annotations and no component time courses. "
            "Curators add annotation sets (events over movie time) and upload MELODIC time courses.",
            links=(("Annotations", f"/movies/{slug}/annotations"),),
        )
    links = {link_key(None, row): f"/components/{c['uuid']}" for row, c in zip(row_names(courses), courses)}
    intro = [
        f"{len(courses)} component time courses (mean over subjects, z-scored) or their synchrony across "
        "viewers (windowed ISC); ",
        html.A("annotation sets", href=f"/movies/{slug}/annotations"),
        ". Click a component's row to open it; drag the slider below to zoom (finer columns load for the range "
        "in view). Every row is in the CSV downloads.",
    ]
    return html.Div(
        [
            html.P(intro, className="text-muted small"),
            chooser(TIMELINE_TRACKS, TIMELINE_NOTE, found["options"], found["value"], found["note"], len(choices)),
            dbc.RadioItems(
                id=TIMELINE_VIEW,
                options=[{"label": v, "value": v} for v in VIEWS],
                value=found["view"],
                inline=True,
                className="incdb-timeline-view small",
                inputClassName="btn-check",
                labelClassName="btn btn-outline-secondary btn-sm",
                labelCheckedClassName="active",
            ),
            html.P(found["view_note"], id=TIMELINE_VIEW_NOTE, className="text-muted small mt-1 mb-1"),
            dcc.Store(id=TIMELINE_STATE, data={**found["state"], "view_param": VIEW_PARAM}),
            html.P(
                "Point at the heatmap to read the time and the labels drawn then.",
                id=TIMELINE_READOUT,
                className="small mb-1 incdb-timeline-readout",
            ),
            nav_graph(TIMELINE, found["figure"], links, by_y=True, class_name="incdb-timeline"),
            moments_list(session, user, slug),
        ],
        id="movie-timeline",
    )


def zoom_range(relayout: Any, span: Any) -> tuple[float, float] | None:
    """The x range a graph's ``relayoutData`` asks for: the zoomed range (clipped to the movie), the whole movie
    for a reset, None when the event changes no time range."""
    if not isinstance(relayout, dict) or not isinstance(span, list | tuple) or len(span) != 2:
        return None
    try:
        low, high = float(span[0]), float(span[1])
        if relayout.get("xaxis.autorange"):
            return low, high
        pair = relayout.get("xaxis.range")
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            pair = (relayout.get("xaxis.range[0]"), relayout.get("xaxis.range[1]"))
        if pair[0] is None or pair[1] is None:
            return None
        start, end = sorted((float(pair[0]), float(pair[1])))
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (start, end, low, high)):
        return None
    start, end = max(start, low), min(end, high)
    return (start, end) if end > start else None


def zoom_timeline(
    session, user, slug: str, start: float, end: float, span: tuple[float, float], view: Any = "activity"
) -> Patch | None:
    """The finer heatmap columns of ``start``-``end`` (see :func:`fine_heatmap_patch`), or None when the movie is
    not visible. The synchrony view has every stored window already (up to ``MAX_COLUMNS``): no finer columns."""
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    if view == "synchrony":
        patch = Patch()
        patch["data"][FINE]["visible"] = False
        return patch
    return fine_heatmap_patch(store.movie_courses(session, user, movie), start, end, span)


def moment_range(time_s: Any, span: Any) -> tuple[float, float] | None:
    """The range a moment's button zooms to: a twentieth of the movie (at least two minutes) centred on the
    moment, inside the movie; None for anything but a number in the movie."""
    if isinstance(time_s, bool) or not isinstance(time_s, int | float) or not isinstance(span, list | tuple):
        return None
    try:
        low, high = float(span[0]), float(span[1])
    except (TypeError, ValueError, IndexError):
        return None
    t = float(time_s)
    if not all(math.isfinite(v) for v in (t, low, high)) or not low <= t <= high:
        return None
    half = max(60.0, (high - low) / 40)
    start, end = max(low, t - half), min(high, t + half)
    return (start, end) if end > start else None


def zoom_to_moment(
    session, user, slug: str, start: float, end: float, span: tuple[float, float], view: Any = "activity"
) -> Patch | None:
    """The figure zoomed to ``start``-``end`` as the slider would (the x range and the finer columns)."""
    patch = zoom_timeline(session, user, slug, start, end, span, view)
    if patch is not None:
        patch["layout"]["xaxis"]["range"] = [round(start, 2), round(end, 2)]
        patch["layout"]["xaxis"]["autorange"] = False
    return patch


# --- one component ---------------------------------------------------------------------------------------------


def course_figure(
    course: dict[str, Any],
    tracks: list[dict[str, Any]],
    overlay: dict[str, Any] | None = None,
    isc: dict[str, Any] | None = None,
) -> go.Figure:
    """The component's mean time course on the movie-time axis (with the spread across subjects as a band),
    a segment per run with its start marked, the annotation tracks below, and optionally a label's regressor.
    Each run keeps its share of ``MAX_DISPLAY_POINTS`` points, with every minimum and maximum. With ``isc`` (the
    answer of ``pipeline.synchrony.reads.component_isc``) holding a windowed ISC, its curve is drawn under the
    course on the same x axis."""
    times = np.asarray(course["movie_time_s"], dtype=float)
    values = np.asarray(course["values"], dtype=float)
    sd = np.asarray(course["sd"], dtype=float) if course.get("sd") is not None else None
    fig = go.Figure()
    start = 0
    total = max(1, len(times))
    for run, (run_start, n) in enumerate(course["runs"]):
        budget = max(4, MAX_DISPLAY_POINTS * int(n) // total)
        segment = slice(start, start + int(n))
        t, v = decimate(times[segment], values[segment], budget)
        if sd is not None:
            bt, low, high = envelope(
                times[segment], values[segment] - sd[segment], values[segment] + sd[segment], budget // 2
            )
            fig.add_trace(
                go.Scatter(
                    x=np.round(np.concatenate([bt, bt[::-1]]), 2).tolist(),
                    y=np.round(np.concatenate([high, low[::-1]]), 4).tolist(),
                    fill="toself",
                    line={"width": 0},
                    fillcolor="rgba(46,134,222,0.18)",
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=np.round(t, 2).tolist(),
                y=np.round(v, 4).tolist(),
                mode="lines",
                line={"color": "#2e86de", "width": 1.5},
                name="time course" if run == 0 else None,
                showlegend=run == 0,
                legendgroup="course",
                hovertemplate=f"movie time %{{x:.0f}} s<br>%{{y:.2f}}<extra>run {run + 1}</extra>",
            )
        )
        fig.add_vline(x=run_start, line={"color": "#95a5a6", "dash": "dot", "width": 1})
        start += int(n)
    if overlay:
        t, v = decimate(np.asarray(overlay["movie_time_s"]), np.asarray(overlay["values"]), MAX_DISPLAY_POINTS)
        fig.add_trace(
            go.Scatter(
                x=np.round(t, 2).tolist(),
                y=np.round(v, 4).tolist(),
                mode="lines",
                line={"color": "#e4572e", "width": 1.5},
                name=esc(overlay["label"]),
                hovertemplate="%{y:.2f}<extra>regressor</extra>",
            )
        )
    curve = _isc_curve(isc)
    if curve is not None:
        fig.add_trace(curve)
    for trace in _track_traces(tracks, "y2"):
        fig.add_trace(trace)
    end = float(times.max()) + float(course["tr"]) if len(times) else 60.0
    height = 320 + 22 * len(tracks) + (130 if curve is not None else 0)
    share = min(0.55, (22 * len(tracks) + 12) / (height - 100)) if tracks else 0.0
    bottom = share + 0.07 if tracks else 0.0
    extra = {}
    if curve is not None:  # the ISC band between the tracks and the course
        band = 110 / (height - 100)
        extra["yaxis3"] = {
            "domain": [bottom, bottom + band],
            "title": "ISC (r)",
            "zeroline": True,
            "zerolinecolor": "#bbb",
        }
        bottom += band + 0.06
    fig.update_layout(
        **extra,
        font=FONT,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        height=height,
        # with the ISC band under the course, the pointer reads every curve at its movie time
        hovermode="closest" if curve is None else "x",
        barmode="overlay",
        xaxis={**_time_axis((0.0, end)), "rangeslider": {"visible": True, "thickness": 0.06}},
        yaxis={"domain": [bottom, 1], "title": "signal"},
        yaxis2=_track_axis(tracks, [0, share]) if tracks else {},
        legend={"orientation": "h", "y": 1.08},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def _isc_curve(isc: dict[str, Any] | None) -> go.Scatter | None:
    """The component's windowed ISC as a line on the third y axis, gaps between runs left open; None without."""
    if not isc or not isc.get("windowed"):
        return None
    t = np.array([np.nan if v is None else v for v in isc["movie_time_s"]], dtype=float)
    v = np.array([np.nan if x is None else x for x in isc["windowed"]], dtype=float)
    if len(t) != len(v) or not np.isfinite(v).any():
        return None
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if len(t) > MAX_DISPLAY_POINTS:
        t, v = t[:: math.ceil(len(t) / MAX_DISPLAY_POINTS)], v[:: math.ceil(len(t) / MAX_DISPLAY_POINTS)]
    gaps = np.flatnonzero(np.diff(t) > 3 * np.median(np.diff(t))) + 1 if len(t) > 2 else []
    t, v = np.insert(t, gaps, np.nan), np.insert(v, gaps, np.nan)  # a break between runs
    window = isc.get("window_s")
    return go.Scatter(
        x=[None if math.isnan(x) else round(x, 2) for x in t],
        y=[None if math.isnan(y) else round(y, 4) for y in v],
        mode="lines",
        line={"color": "#8e44ad", "width": 1.5},
        name="windowed ISC" + (f" ({window:g} s windows)" if window else ""),
        yaxis="y3",
        connectgaps=False,
        hovertemplate="window centred at %{x:.0f} s<br>ISC r = %{y:.2f}<extra></extra>",
    )


SPECTRUM_HEIGHT = 220  # px


def spectrum_figure(spectrum: dict[str, Any]) -> go.Figure:
    power = np.asarray(spectrum["power"], dtype=float)
    fig = go.Figure(
        go.Scatter(
            x=np.round(np.asarray(spectrum["frequency_hz"], dtype=float), 5).tolist(),
            y=[float(f"{v:.4g}") for v in power],  # four digits: a screen shows fewer
            mode="lines",
            line={"color": "#17b890"},
            hovertemplate="%{x:.3f} Hz<br>%{y:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        font=FONT,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        height=SPECTRUM_HEIGHT,
        xaxis={"title": "frequency (Hz)"},
        yaxis={"title": "power"},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def temporal_table(rows: list[dict[str, Any]], limit: int = 25) -> html.Div:
    if not rows:
        return empty_state("No temporal decoding", "The movie has no annotation sets yet.")
    body = [
        html.Tr(
            [
                html.Td(r["annotation"]),
                html.Td(dcc.Link(r["label"], href=label_href(r["label"]))),
                html.Td(f"{r['r']:+.3f}"),
                html.Td(f"{r['p']:.3g}"),
                html.Td(f"{r['q']:.3g}", className="fw-bold" if r["q"] < 0.05 else None),
            ]
        )
        for r in rows[:limit]
    ]
    return html.Div(
        [
            dbc.Table(
                [
                    html.Thead(html.Tr([html.Th(h) for h in ("Annotation set", "Label", "r", "p", "q")])),
                    html.Tbody(body),
                ],
                size="sm",
                hover=True,
                responsive=True,
                className="incdb-table",
            ),
            html.P(
                f"{len(rows)} labels; p from 1,000+ circular shifts of the regressor within each run, q by "
                "Benjamini-Hochberg over this component's labels."
                + (f" The best {limit} are shown." if len(rows) > limit else ""),
                className="text-muted small",
            ),
        ],
        id="temporal-table",
    )


def _q_detail(rows: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    return {(r["annotation_id"], r["label"]): f"q {r['q']:.3g}, r {r['r']:+.2f}" for r in rows}


def course_panel(
    course: dict[str, Any],
    tracks: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    uuid: str,
    choices: list[dict[str, Any]] | None = None,
    default: list[tuple[int, str]] | None = None,
    note: str | None = None,
    isc: dict[str, Any] | None = None,
) -> html.Div:
    """The component page's Time course panel: the label chooser (its best labels drawn first), the course with
    the tracks (and the windowed ISC under it when there is one), its spectrum, the decoding table and a choice
    of label whose regressor is overlaid."""
    choices = choices or []
    options = [
        {
            "label": f"{r['annotation']}: {r['label']} (r {r['r']:+.2f})",
            "value": choice_value(r["annotation_id"], r["label"]),
        }
        for r in rows[:50]
    ]
    value = [choice_value(t["set_id"], t["label"]) for t in tracks]
    default_values = [choice_value(*p) for p in default] if default is not None else value
    ranked = store.component_default_tracks(rows, n=len(rows))
    return html.Div(
        [
            chooser(
                COURSE_TRACKS,
                COURSE_NOTE,
                label_options(choices, [(t["set_id"], t["label"]) for t in tracks], ranked, None, _q_detail(rows)),
                value,
                note or chooser_note(len(tracks), len(choices)),
                len(choices),
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Dropdown(
                            id=COURSE_LABEL, options=options, placeholder="Overlay a label's regressor…", clearable=True
                        ),
                        md=6,
                    ),
                    dbc.Col(
                        html.A(
                            "download the time course (CSV, every row)",
                            href=f"/components/{uuid}/timecourse.csv",
                            download="",
                            className="small",
                        ),
                        md=6,
                        className="text-md-end align-self-center",
                    ),
                ],
                className="mb-2 g-2",
            ),
            dcc.Store(id=COURSE_DATA, data={"uuid": uuid, "default": default_values, "param": LABELS_PARAM}),
            dcc.Graph(
                id={"type": GRAPH, "graph": COURSE},
                figure=course_figure(course, tracks, None, isc),
                config={"displayModeBar": False, "responsive": True},
                className="incdb-graph",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.H3("Power spectrum", className="h6 mt-3"),
                            # A responsive dcc.Graph fills its container's height, and this column stretches to the
                            # decoding table beside it: the height is fixed here, the width still follows the column.
                            dcc.Graph(
                                id="course-spectrum",
                                figure=spectrum_figure(course["spectrum"]),
                                config={"displayModeBar": False, "responsive": True},
                                style={"height": f"{SPECTRUM_HEIGHT}px"},
                            ),
                        ],
                        lg=5,
                    ),
                    dbc.Col(
                        [
                            html.H3(
                                [
                                    "Temporal decoding ",
                                    html.A(
                                        "download CSV",
                                        href=f"/components/{uuid}/temporal.csv",
                                        download="",
                                        className="incdb-section-link",
                                    ),
                                ],
                                className="h6 mt-3",
                            ),
                            temporal_table(rows),
                        ],
                        lg=7,
                    ),
                ],
                className="g-4",
            ),
        ],
        id="course-panel",
    )


def _component_tracks(session, user, uuid: str, chosen: list[tuple[int, str]] | None):
    """(component, course, rows, choices, default pairs, tracks, note) of a visible component with a time course,
    else None."""
    course = store.component_course(session, user, uuid)
    if course is None:
        return None
    comp = queries.get_visible_component(session, user, uuid)
    movie = comp.collection.movie
    rows = store.component_temporal(session, user, uuid) or []
    choices = store.label_choices(session, user, movie)
    default = store.component_default_tracks(rows)
    pairs = default if chosen is None else chosen
    end = float(course["movie_time_s"][-1]) if course["movie_time_s"] else 0.0
    tracks = store.track_intervals(session, movie, pairs, gap=_merge_gap((0.0, end)))
    note = chooser_note(len(tracks), len(choices), len(pairs) if chosen is not None else None)
    return comp, course, rows, choices, default, tracks, note


def course_section(session, user, uuid: str, chosen: list[tuple[int, str]] | None = None) -> html.Div | None:
    """The Time course panel of a component (None when it is not visible or has no time course)."""
    found = _component_tracks(session, user, uuid, chosen)
    if found is None:
        return None
    _, course, rows, choices, default, tracks, note = found
    isc = synchrony_reads.component_isc(session, user, uuid)
    return course_panel(course, tracks, rows, uuid, choices, default, note, isc)


def course_update(
    session, user, uuid: str, overlay_choice: Any, chosen: Any
) -> tuple[go.Figure, str, list[dict]] | None:
    """The course figure, the chooser's note and options for the labels ``chosen`` and the regressor of
    ``overlay_choice`` (``"set id|label"``), read again from the database (a page holds no events)."""
    found = _component_tracks(session, user, uuid, parse_choices(chosen))
    if found is None:
        return None
    comp, course, rows, choices, _, tracks, note = found
    overlay = None
    picked = parse_choices([overlay_choice]) if isinstance(overlay_choice, str) else []
    if picked:
        set_id, label = picked[0]
        sign = next((1 if r["r"] >= 0 else -1 for r in rows if (r["annotation_id"], r["label"]) == (set_id, label)), 1)
        events = store.label_events(session, comp.collection.movie, set_id, label)
        overlay = label_overlay(course, events, label, sign)
    ranked = store.component_default_tracks(rows, n=len(rows))
    options = label_options(choices, [(t["set_id"], t["label"]) for t in tracks], ranked, None, _q_detail(rows))
    isc = synchrony_reads.component_isc(session, user, uuid)
    return course_figure({**course, "spectrum": None}, tracks, overlay, isc), note, options


def label_overlay(course: dict[str, Any], events: list[dict[str, Any]], label: str, sign: Any) -> dict[str, Any] | None:
    """The label's HRF-convolved regressor on the course's rows (one subject), scaled like the course so the two
    compare by eye and signed like their r; None for a label without events."""
    runs = [(float(start), int(n)) for start, n in course["runs"]]
    values = np.asarray(course["values"], dtype=float)
    if not events or sum(n for _, n in runs) != len(values):  # the runs must describe exactly the rows
        return None
    triple = tuple(np.array([e[k] for e in events], dtype=float) for k in ("onset", "duration", "amplitude"))
    _, matrix = label_regressors({label: triple}, float(course["tr"]), runs)
    times = np.concatenate(run_frame_times(float(course["tr"]), runs))
    order = np.argsort(times, kind="stable")
    x = matrix[:, 0]
    x = (x - x.mean()) / (x.std() or 1.0) * (float(values.std()) or 1.0) * (-1 if sign == -1 else 1)
    return {"label": label, "movie_time_s": times[order].tolist(), "values": x[order].tolist()}


# --- browser code of the chooser and the readout (registered in callbacks/) ----------------------------------------

# Restores the chooser from the page address (``labels``) once its panel is on the page (the server draws only the
# labels the movie has); nothing changes when the address has none or holds the same choice.
RESTORE_CHOICE_JS = """
function(state, current) {
    const none = window.dash_clientside.no_update;
    const text = new URLSearchParams(window.location.search).get((state && state.param) || "labels");
    if (!text) { return none; }
    let wanted;
    try { wanted = JSON.parse(text); } catch (e) { return none; }
    if (!Array.isArray(wanted)) { return none; }
    const value = wanted.filter(v => typeof v === "string" && /^[0-9]{1,9}[|]./.test(v)).slice(0, 40);
    return JSON.stringify(value) === JSON.stringify(current || []) ? none : value;
}
"""

# Restores the Timeline's view (``view``) from the page address once the tab is on the page.
RESTORE_VIEW_JS = """
function(state, current) {
    const none = window.dash_clientside.no_update;
    const wanted = new URLSearchParams(window.location.search).get((state && state.view_param) || "view");
    const value = wanted === "synchrony" ? "synchrony" : "activity";
    return value === current ? none : value;
}
"""

# Writes the Timeline's view into the page address; activity (the default) leaves no parameter.
SYNC_VIEW_BODY = """
    const [value, state] = args;
    const params = {[(state && state.view_param) || "view"]: value === "synchrony" ? "synchrony" : null};"""

# Writes the choice into the page address; the default choice leaves no parameter.
SYNC_CHOICE_BODY = """
    const [value, state] = args;
    const same = JSON.stringify(value || []) === JSON.stringify((state && state.default) || []);
    const params = {[(state && state.param) || "labels"]: same ? null : JSON.stringify(value || [])};"""

# The line above the movie timeline: the row under the pointer, where it comes from, the movie time as h:mm:ss and
# the labels drawn at that time (read from the figure's own tracks, so no per-cell text is sent).
READOUT_JS = """
function(hover, figure, state) {
    const none = window.dash_clientside.no_update;
    if (!hover || !hover.points || !hover.points.length || !figure) { return none; }
    const point = hover.points[0];
    const plain = (s) => new DOMParser().parseFromString(String(s), "text/html").documentElement.textContent;
    const clock = (t) => {
        const s = Math.max(0, Math.round(t));
        const mm = String(Math.floor(s % 3600 / 60)).padStart(2, "0"), ss = String(s % 60).padStart(2, "0");
        return `${Math.floor(s / 3600)}:${mm}:${ss}`;
    };
    const time = point.base !== undefined ? point.base : point.x;
    if (typeof time !== "number") { return none; }
    const names = [];
    for (const trace of figure.data || []) {
        if (trace.type !== "bar" || !trace.base) { continue; }
        for (let i = 0; i < trace.base.length; i++) {
            if (trace.base[i] <= time && time <= trace.base[i] + trace.x[i]) { names.push(plain(trace.name)); break; }
        }
    }
    const row = point.base === undefined && typeof point.y === "string" ? plain(point.y) : null;
    const origin = row && state && state.origins ? plain(state.origins[point.y] || "") : "";
    const parts = [row, origin, `movie time ${clock(time)}`, names.length ? `labels: ${names.join(", ")}` : "no label"];
    return parts.filter(Boolean).join(" · ");
}
"""
