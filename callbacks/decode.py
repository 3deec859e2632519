"""Callbacks of ``dashboard.pages.decode``: the public decoder (``/decode``): a visitor drops one NIfTI map and gets
its decoding profile and the most."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, no_update

from dashboard.components.data import as_dict
from dashboard.pages.decode import RESULT_PATH, _upload_url


@dash.callback(
    Output("decode-dropzone", "data-upload-url"), Input("decode-mask", "value"), Input("decode-reference", "value")
)
def _options(mask: Any, reference: Any) -> str:
    """The options travel in the address the file is sent to (the server checks them)."""
    mask = mask if mask in ("brain", "nonzero") else "brain"
    return _upload_url(mask, reference if isinstance(reference, str) else "")


@dash.callback(Output("decode-go", "href"), Input("decode-uploaded", "data"), prevent_initial_call=True)
def _open_result(uploaded: Any):
    """Once the file went through, open its result (only an address of a result, whatever the Store holds)."""
    url = as_dict(as_dict(uploaded).get("last")).get("url")
    return url if isinstance(url, str) and RESULT_PATH.fullmatch(url) else no_update
