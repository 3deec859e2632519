"""Figures and panels of the movie's timeline: annotation tracks, component time courses, power spectra and the
temporal decoding table. Every label and name from a file or a person is escaped before it reaches Plotly (which
renders a subset of HTML in labels and hover text)."""

from __future__ import annotations

import html as html_text
from collections import Counter
from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

from dashboard.components.charts import FONT, GRAPH, link_key, nav_graph
from dashboard.components.common import empty_state
from pipeline.temporal.decoding import label_regressors, run_frame_times
from store.timeline import downsample

TRACK_COLORS = ("#e4572e", "#2e86de", "#17b890", "#f2a541", "#8e44ad", "#7f8c8d", "#c0392b", "#16a085")
MAX_TRACKS = 40
COURSE = "course-graph"
COURSE_DATA = "course-data"
COURSE_LABEL = "course-label"


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


def _tracks(annotations: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(track name, events) per label of every set, at most ``MAX_TRACKS``."""
    tracks = []
    for a in annotations:
        by_label: dict[str, list] = {}
        for e in a.get("events", []):
            by_label.setdefault(e["label"], []).append(e)
        for label in sorted(by_label):
            name = label if len(annotations) == 1 else f"{a['name']}: {label}"
            tracks.append((name, by_label[label]))
    return tracks[:MAX_TRACKS]


def _track_traces(tracks: list, yaxis: str = "y") -> list[go.Bar]:
    traces = []
    for i, (name, events) in enumerate(tracks):
        traces.append(
            go.Bar(
                base=[e["onset"] for e in events],
                x=[max(e["duration"], 0.5) for e in events],
                y=[esc(name)] * len(events),
                orientation="h",
                marker={"color": TRACK_COLORS[i % len(TRACK_COLORS)]},
                yaxis=yaxis,
                showlegend=False,
                customdata=[[movie_clock(e["onset"]), f"{e['duration']:g}"] for e in events],
                hovertemplate="%{y}<br>%{customdata[0]}, %{customdata[1]} s<extra></extra>",
            )
        )
    return traces


def _active_labels(tracks: list, grid: np.ndarray) -> list[str]:
    """For each time of ``grid``, the labels whose events cover it (for the heatmap's hover text)."""
    names = [[] for _ in grid]
    for name, events in tracks:
        covered = np.zeros(len(grid), dtype=bool)
        for e in events:
            covered |= (grid >= e["onset"]) & (grid <= e["onset"] + max(e["duration"], 1.0))
        for i in np.flatnonzero(covered):
            names[i].append(esc(name))
    return [", ".join(n) if n else "no label" for n in names]


def _origin(c: dict[str, Any]) -> str:
    """Where a heatmap row's component comes from: its collection and the file's own name."""
    source = str(c.get("source_file") or "")
    return esc(f"{c['collection']} · {source.rsplit('/', 1)[-1]}" if source else c["collection"])


def _span(annotations: list[dict[str, Any]], courses: list[dict[str, Any]]) -> tuple[float, float]:
    ends = [e["onset"] + e["duration"] for a in annotations for e in a.get("events", [])]
    times = [t for c in courses for t in (c["movie_time_s"][:1] + c["movie_time_s"][-1:])]
    values = ends + times + [0.0]
    return 0.0, max(values) or 60.0


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


def timeline_figure(annotations: list[dict[str, Any]], courses: list[dict[str, Any]]) -> go.Figure:
    """Annotation tracks (a row per label) above a heatmap of the components' z-scored mean time courses (a row
    per component, :func:`row_names`, grouped by best term), sharing one movie-time axis with a range slider.
    Hovering a cell gives the component, its collection and file, the movie time as h:mm:ss and the labels whose
    events cover that time."""
    tracks = _tracks(annotations)
    span = _span(annotations, courses)
    fig = go.Figure()
    for trace in _track_traces(tracks, "y2"):
        fig.add_trace(trace)
    if courses:
        grid = np.linspace(span[0], span[1], min(2000, max(len(c["movie_time_s"]) for c in courses)))
        z = np.vstack([np.interp(grid, c["movie_time_s"], c["z"], left=np.nan, right=np.nan) for c in courses])
        # One text per time (clock and labels), so each cell carries two strings as before.
        at = [f"movie time {movie_clock(t)}<br>{a}" for t, a in zip(grid, _active_labels(tracks, grid))]
        fig.add_trace(
            go.Heatmap(
                x=grid,
                y=row_names(courses),
                z=z,
                colorscale="RdBu_r",
                zmid=0,
                zmin=-3,
                zmax=3,
                yaxis="y",
                colorbar={"title": "z", "len": 0.55, "y": 0.28},
                customdata=[[[_origin(c), a] for a in at] for c in courses],
                hovertemplate="%{y}<br>%{customdata[0]}<br>%{customdata[1]}<br>z = %{z:.2f}<extra></extra>",
            )
        )
    track_share = 0.4 if courses and tracks else (1.0 if tracks else 0.0)
    fig.update_layout(
        font=FONT,
        barmode="overlay",
        hovermode="closest",
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        height=max(360, 24 * len(tracks) + (16 * len(courses) if courses else 0) + 160),
        xaxis={**_time_axis(span), "rangeslider": {"visible": True, "thickness": 0.06}, "range": list(span)},
        yaxis={
            "domain": [0, max(0.05, 1 - track_share - 0.04)] if courses else [0, 0.01],
            "automargin": True,
            "autorange": "reversed",
            "showticklabels": bool(courses),
        },
        yaxis2={"domain": [1 - track_share, 1] if tracks else [0.99, 1], "automargin": True, "autorange": "reversed"},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def timeline_panel(annotations: list[dict[str, Any]], courses: list[dict[str, Any]], movie_slug: str) -> html.Div:
    """The movie page's Timeline tab."""
    if not annotations and not courses:
        return empty_state(
            "No timeline yet",
            "This movie has no annotations and no component time courses. "
            "Curators add annotation sets (events over movie time) and upload MELODIC time courses.",
            links=(("Annotations", f"/movies/{movie_slug}/annotations"),),
        )
    links = {link_key(None, row): f"/components/{c['uuid']}" for row, c in zip(row_names(courses), courses)}
    note = [
        f"{len(courses)} component time courses (mean over subjects, z-scored); ",
        html.A("annotation sets", href=f"/movies/{movie_slug}/annotations"),
        ". Click a component's row to open it; drag the slider below to zoom.",
    ]
    return html.Div(
        [
            html.P(note, className="text-muted small"),
            nav_graph("timeline", timeline_figure(annotations, courses), links, by_y=True, class_name="incdb-timeline"),
        ],
        id="movie-timeline",
    )


# --- one component ---------------------------------------------------------------------------------------------


def course_figure(
    course: dict[str, Any], annotations: list[dict[str, Any]], overlay: dict[str, Any] | None = None
) -> go.Figure:
    """The component's mean time course on the movie-time axis (with the spread across subjects as a band),
    a segment per run with its start marked, the annotation tracks below, and optionally a label's regressor."""
    times = np.asarray(course["movie_time_s"])
    values = np.asarray(course["values"])
    sd = np.asarray(course["sd"]) if course.get("sd") else None
    tracks = _tracks(annotations)
    fig = go.Figure()
    start = 0
    for run, (run_start, n) in enumerate(course["runs"]):
        t, v = downsample(times[start : start + n], values[start : start + n])
        if sd is not None:
            _, s = downsample(times[start : start + n], sd[start : start + n])
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([t, t[::-1]]),
                    y=np.concatenate([v + s, (v - s)[::-1]]),
                    fill="toself",
                    line={"width": 0},
                    fillcolor="rgba(46,134,222,0.18)",
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=v,
                mode="lines",
                line={"color": "#2e86de", "width": 1.5},
                name="time course" if run == 0 else None,
                showlegend=run == 0,
                legendgroup="course",
                hovertemplate=f"movie time %{{x:.0f}} s<br>%{{y:.2f}}<extra>run {run + 1}</extra>",
            )
        )
        fig.add_vline(x=run_start, line={"color": "#95a5a6", "dash": "dot", "width": 1})
        start += n
    if overlay:
        fig.add_trace(
            go.Scatter(
                x=overlay["movie_time_s"],
                y=overlay["values"],
                mode="lines",
                line={"color": "#e4572e", "width": 1.5},
                name=esc(overlay["label"]),
                hovertemplate="%{y:.2f}<extra>regressor</extra>",
            )
        )
    for trace in _track_traces(tracks, "y2"):
        fig.add_trace(trace)
    end = float(times.max()) + course["tr"] if len(times) else 60.0
    fig.update_layout(
        font=FONT,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        height=320 + 22 * len(tracks),
        hovermode="closest",
        xaxis={**_time_axis((0.0, end)), "rangeslider": {"visible": True, "thickness": 0.06}},
        yaxis={"domain": [0.45 if tracks else 0, 1], "title": "signal"},
        yaxis2={"domain": [0, 0.38], "automargin": True, "autorange": "reversed"} if tracks else {},
        legend={"orientation": "h", "y": 1.08},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


SPECTRUM_HEIGHT = 220  # px


def spectrum_figure(spectrum: dict[str, Any]) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=spectrum["frequency_hz"],
            y=spectrum["power"],
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


def course_panel(
    course: dict[str, Any], annotations: list[dict[str, Any]], rows: list[dict[str, Any]], uuid: str
) -> html.Div:
    """The component page's Time course panel: the course, its spectrum, the decoding table and a label chooser
    that overlays the label's regressor."""
    options = [
        {"label": f"{r['annotation']}: {r['label']} (r {r['r']:+.2f})", "value": f"{r['annotation_id']}|{r['label']}"}
        for r in rows[:50]
    ]
    return html.Div(
        [
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
            dcc.Store(
                id=COURSE_DATA,
                data={
                    "course": {k: course[k] for k in ("movie_time_s", "values", "sd", "runs", "tr")},
                    "annotations": annotations,
                    "signs": {f"{r['annotation_id']}|{r['label']}": 1 if r["r"] >= 0 else -1 for r in rows[:50]},
                },
            ),
            dcc.Graph(
                id={"type": GRAPH, "graph": COURSE},
                figure=course_figure(course, annotations),
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


def label_overlay(
    course: dict[str, Any], annotations: list[dict[str, Any]], choice: Any, sign: Any
) -> dict[str, Any] | None:
    """The chosen label's HRF-convolved regressor on the course's rows (one subject), scaled like the course so
    the two compare by eye and signed like their r; None for no choice or a label without events."""
    if not isinstance(choice, str) or "|" not in choice:
        return None
    set_id, label = choice.split("|", 1)
    runs = [(float(start), int(n)) for start, n in course["runs"]]
    values = np.asarray(course["values"], dtype=float)
    if sum(n for _, n in runs) != len(values):  # the runs must describe exactly the rows of this course
        return None
    events = [
        e for a in annotations if str(a.get("id")) == set_id for e in a.get("events", []) if e.get("label") == label
    ]
    if not events:
        return None
    triple = tuple(np.array([e[k] for e in events], dtype=float) for k in ("onset", "duration", "amplitude"))
    _, matrix = label_regressors({label: triple}, float(course["tr"]), runs)
    times = np.concatenate(run_frame_times(float(course["tr"]), runs))
    order = np.argsort(times, kind="stable")
    x = matrix[:, 0]
    x = (x - x.mean()) / (x.std() or 1.0) * (float(values.std()) or 1.0) * (-1 if sign == -1 else 1)
    return {"label": label, "movie_time_s": times[order].tolist(), "values": x[order].tolist()}
