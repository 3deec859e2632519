"""Callbacks of ``dashboard.components.collection_form``: the live line under the timing fields of the new and edit
forms."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard.components.collection_form import _id, timing_summary

for _prefix in ("new", "edit"):
    dash.callback(
        Output(f"{_prefix}-timing-summary", "children"),
        Input(_id(_prefix, "runs"), "value"),
        Input(_id(_prefix, "subjects"), "value"),
        Input({"type": f"{_prefix}-meta", "group": "acquisition", "field": "tr"}, "value"),
    )(lambda runs, subjects, tr: timing_summary(tr, runs, subjects))
