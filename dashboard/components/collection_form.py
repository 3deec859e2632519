"""The collection form (create and edit): the DESIGN section 1 fields and metadata groups from
``pipeline.curation.metadata.GROUPS``, with units next to numbers. Metadata inputs use pattern-matching ids so that one
State collects all of them.

The acquisition's TR is a metadata field, but the timing of the time courses needs it, so it is drawn next to the
timing fields (:data:`TIMING_METADATA`) instead of in the collapsed "Acquisition" group; its id is the same
pattern-matching id, so saving reads it as before."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, State, html

from dashboard.components.common import dom_id
from dashboard.components.data import read
from pipeline.curation.metadata import GROUPS, Field
from pipeline.temporal.timing import TimeCourseError, Timing
from store import queries
from store.models import LICENSES

LICENSE_LABELS = {"CC0-1.0": "CC0 1.0 (public domain dedication)", "CC-BY-4.0": "CC BY 4.0 (attribution)"}
FIELDS = (
    "name",
    "movie",
    "year",
    "description",
    "dataset_url",
    "doi",
    "contributors",
    "license",
    "visibility",
    "runs",
    "subjects",
)


def _id(prefix: str, name: str) -> str:
    return f"{prefix}-{name.replace('_', '-')}"


def form_states(prefix: str) -> list[State]:
    return [State(_id(prefix, f), "value") for f in FIELDS] + [
        State({"type": f"{prefix}-meta", "group": ALL, "field": ALL}, "value"),
        State({"type": f"{prefix}-meta", "group": ALL, "field": ALL}, "id"),
    ]


def form_values(args: list[Any]) -> dict[str, Any]:
    """The values of ``form_states`` (in that order) as the dict ``validate_collection_form`` takes."""
    values = dict(zip(FIELDS, args[: len(FIELDS)]))
    meta_values, meta_ids = args[len(FIELDS)], args[len(FIELDS) + 1]
    metadata: dict[str, dict[str, Any]] = {}
    if isinstance(meta_values, list) and isinstance(meta_ids, list):
        for value, ident in zip(meta_values, meta_ids):
            # An id without a text group and field (only a forged request sends one) names no field: left out.
            if isinstance(ident, dict) and isinstance(ident.get("group"), str) and isinstance(ident.get("field"), str):
                metadata.setdefault(ident["group"], {})[ident["field"]] = value
    values["metadata"] = metadata
    return values


# The fields a validated form gives to both creating and updating a collection (pipeline.curation.catalog).
SHARED_FIELDS = ("visibility", "license", "description", "dataset_url", "doi", "contributors", "timing")


def shared_fields(clean: dict[str, Any]) -> dict[str, Any]:
    """Of ``validate_collection_form``'s cleaned values, those that create and update both take by name."""
    return {name: clean[name] for name in SHARED_FIELDS}


def _meta_control(prefix: str, group: str, f: Field, value: Any):
    ident = {"type": f"{prefix}-meta", "group": group, "field": f.name}
    if f.kind == "choice":
        return dbc.Select(
            id=ident,
            value=value or "",
            options=[{"label": "not stated", "value": ""}] + [{"label": c, "value": c} for c in f.choices],
        )
    if f.kind == "bool":
        text = "" if value is None else ("yes" if value is True or value == "yes" else "no")
        return dbc.Select(
            id=ident,
            value=text,
            options=[
                {"label": "not stated", "value": ""},
                {"label": "yes", "value": "yes"},
                {"label": "no", "value": "no"},
            ],
        )
    shown = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    control = dbc.Input(
        id=ident,
        value=shown,
        type="text",
        inputmode="decimal" if f.kind in ("number", "integer") else None,
        maxlength=1000,
    )
    if f.unit:
        return dbc.InputGroup([control, dbc.InputGroupText(f.unit)])
    return control


# Metadata fields drawn with the timing of the time courses rather than in their group: (group, field).
TIMING_METADATA = (("acquisition", "tr"),)


def _meta_column(prefix: str, group: str, f: Field, value: Any, **width: int) -> dbc.Col:
    """A metadata field with its label, unit and range."""
    hint = None
    if f.kind in ("number", "integer") and f.minimum is not None and f.maximum is not None:
        hint = (
            f"{'whole number' if f.kind == 'integer' else 'number'} "
            f"{f.minimum:g}–{f.maximum:g}{(' ' + f.unit) if f.unit else ''}"
        )
    label_for = dom_id({"type": f"{prefix}-meta", "group": group, "field": f.name})  # _meta_control's id
    return dbc.Col(
        [
            dbc.Label(f.label + (f" ({f.unit})" if f.unit else ""), html_for=label_for, className="small mb-1"),
            _meta_control(prefix, group, f, value),
            dbc.FormText(hint) if hint else None,
        ],
        className="mb-3",
        **width,
    )


def metadata_section(prefix: str, metadata: dict[str, dict[str, Any]] | None) -> dbc.Accordion:
    metadata = metadata or {}
    items = []
    for group, (label, fields) in GROUPS.items():
        values = metadata.get(group, {})
        shown = [f for f in fields if (group, f.name) not in TIMING_METADATA]
        rows = [_meta_column(prefix, group, f, values.get(f.name), md=6, lg=4) for f in shown]
        n = sum(1 for f in shown if f.name in values)
        items.append(
            dbc.AccordionItem(dbc.Row(rows), title=f"{label}" + (f" ({n} filled)" if n else ""), item_id=group)
        )
    return dbc.Accordion(items, start_collapsed=True, always_open=True, id=f"{prefix}-meta-groups")


def movie_titles() -> list[str]:
    """The movies the signed-in curator may see (public ones and their own; every movie for an admin)."""
    return read(queries.visible_movie_titles)


def timing_section(
    prefix: str, timing: dict[str, Any] | None, metadata: dict[str, dict[str, Any]] | None = None
) -> html.Div:
    """Where the time courses sit in the movie: the TR (the acquisition's metadata field, drawn here), runs
    (movie start and volumes) and subjects concatenated. The computed total is shown as the curator types."""
    runs = ",".join(f"{start:g}:{n}" for start, n in (timing or {}).get("runs", []))
    fields = {(group, f.name): f for group, (_, group_fields) in GROUPS.items() for f in group_fields}
    moved = [
        _meta_column(prefix, group, fields[(group, name)], ((metadata or {}).get(group) or {}).get(name), md=3)
        for group, name in TIMING_METADATA
    ]
    return html.Div(
        [
            html.H2("Timing of the time courses", className="h6 mt-3"),
            html.P(
                "Only needed with time courses (melodic_mix or <map>_timecourses.tsv). Runs in the order they are "
                "concatenated: the movie time in seconds of each run's first kept volume, a colon, its number of "
                "volumes; e.g. 0:451,886:441 (runs may overlap).",
                className="text-muted small",
            ),
            dbc.Row(
                [
                    *moved,
                    dbc.Col(
                        [
                            dbc.Label("Runs", html_for=_id(prefix, "runs"), className="small mb-1"),
                            dbc.Input(id=_id(prefix, "runs"), value=runs, maxlength=4000, placeholder="0:451,886:441"),
                        ],
                        md=6,
                        className="mb-2",
                    ),
                    dbc.Col(
                        [
                            dbc.Label(
                                "Subjects concatenated", html_for=_id(prefix, "subjects"), className="small mb-1"
                            ),
                            dbc.Input(
                                id=_id(prefix, "subjects"),
                                value=str((timing or {}).get("subjects", 1)),
                                inputmode="numeric",
                                maxlength=4,
                            ),
                        ],
                        md=3,
                        className="mb-2",
                    ),
                ]
            ),
            html.Div(id=f"{prefix}-timing-summary", className="small text-muted"),
        ]
    )


def collection_form(prefix: str, values: dict[str, Any] | None = None, submit_label: str = "Save") -> dbc.Form:
    v = values or {}
    return dbc.Form(
        [
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Collection name *", html_for=_id(prefix, "name")),
                            dbc.Input(
                                id=_id(prefix, "name"),
                                value=v.get("name", ""),
                                maxlength=255,
                                placeholder="e.g. Forrest Gump 7T audio-visual ICA",
                            ),
                        ],
                        md=6,
                        className="mb-3",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Movie *", html_for=_id(prefix, "movie")),
                            dbc.Input(
                                id=_id(prefix, "movie"),
                                value=v.get("movie", ""),
                                list=f"{prefix}-movie-list",
                                maxlength=255,
                                placeholder="title as released",
                            ),
                            html.Datalist(
                                id=f"{prefix}-movie-list", children=[html.Option(value=t) for t in movie_titles()]
                            ),
                        ],
                        md=4,
                        className="mb-3",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Year", html_for=_id(prefix, "year")),
                            dbc.Input(
                                id=_id(prefix, "year"),
                                value=str(v.get("year") or ""),
                                inputmode="numeric",
                                maxlength=4,
                                placeholder="1994",
                            ),
                        ],
                        md=2,
                        className="mb-3",
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Description", html_for=_id(prefix, "description")),
                            dbc.Textarea(
                                id=_id(prefix, "description"), value=v.get("description", ""), rows=3, maxlength=20000
                            ),
                        ],
                        className="mb-3",
                    )
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Dataset URL", html_for=_id(prefix, "dataset_url")),
                            dbc.Input(
                                id=_id(prefix, "dataset_url"),
                                value=v.get("dataset_url", ""),
                                type="text",
                                placeholder="https://openneuro.org/datasets/...",
                            ),
                        ],
                        md=6,
                        className="mb-3",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("DOI of the paper", html_for=_id(prefix, "doi")),
                            dbc.Input(
                                id=_id(prefix, "doi"), value=v.get("doi", ""), placeholder="10.1038/sdata.2014.3"
                            ),
                        ],
                        md=6,
                        className="mb-3",
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Contributors", html_for=_id(prefix, "contributors")),
                            dbc.Input(
                                id=_id(prefix, "contributors"),
                                value=v.get("contributors", ""),
                                placeholder="names, separated by commas",
                            ),
                        ],
                        className="mb-3",
                    )
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("License"),
                            dbc.RadioItems(
                                id=_id(prefix, "license"),
                                value=v.get("license", "CC0-1.0"),
                                options=[{"label": LICENSE_LABELS[x], "value": x} for x in LICENSES],
                            ),
                        ],
                        md=6,
                        className="mb-3",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Visibility"),
                            dbc.RadioItems(
                                id=_id(prefix, "visibility"),
                                value=v.get("visibility", "public"),
                                options=[
                                    {
                                        "label": "Public: everyone sees it; its maps join the merged maps",
                                        "value": "public",
                                    },
                                    {"label": "Private: only you and administrators see it", "value": "private"},
                                ],
                            ),
                        ],
                        md=6,
                        className="mb-3",
                    ),
                ]
            ),
            html.H2("How the data were recorded", className="h6 mt-2"),
            html.P("All optional. Numbers in the units shown.", className="text-muted small"),
            metadata_section(prefix, v.get("metadata")),
            timing_section(prefix, v.get("timing"), v.get("metadata")),
            dbc.Button(submit_label, id=f"{prefix}-submit", type="submit", color="primary", className="mt-3"),
            html.Div(id=f"{prefix}-message"),
        ],
        id=f"{prefix}-form",
    )


def timing_summary(tr: Any, runs: Any, subjects: Any) -> str:
    """What the timing fields give, or why they cannot be used (for the live line under them)."""
    if not isinstance(runs, str) or not runs.strip():
        return "No timing: time courses cannot be placed on the movie."
    try:
        return "→ " + Timing.parse(tr, runs, subjects or 1).describe()
    except TimeCourseError as exc:
        return f"✗ {exc}"
