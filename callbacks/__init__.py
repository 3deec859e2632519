"""Every Dash callback of INcDb, and only callbacks (docs/architecture.md).

``dashboard/`` draws: pages (``register_page`` and ``layout``) and components (layout and figure builders, pure
functions of data). ``callbacks/`` reacts: one module per page or shared component, mirroring ``dashboard/``
(``callbacks/component.py`` for ``dashboard/pages/component.py``, ``callbacks/components/tables.py`` for
``dashboard/components/tables.py``). A callback reads its inputs, calls ``store``/``pipeline`` and a ``dashboard``
builder, and returns. ``app.py`` calls :func:`register` once, after the Dash app (and so its pages) exists; importing
the modules registers their callbacks with Dash's global registry.
"""

from __future__ import annotations

import dash


def register(app: dash.Dash) -> None:
    """Register every callback of the app: the modules' global ones, and the viewer's, which need the app."""
    import callbacks.account.confirm_email  # noqa: F401
    import callbacks.account.forgot_password  # noqa: F401
    import callbacks.account.password  # noqa: F401
    import callbacks.account.profile  # noqa: F401
    import callbacks.account.register  # noqa: F401
    import callbacks.account.reset_password  # noqa: F401
    import callbacks.account.sign_in  # noqa: F401
    import callbacks.account.sign_out  # noqa: F401
    import callbacks.admin  # noqa: F401
    import callbacks.components.charts  # noqa: F401
    import callbacks.components.clusters  # noqa: F401
    import callbacks.components.collection_form  # noqa: F401
    import callbacks.components.job_runner  # noqa: F401
    import callbacks.components.lazy  # noqa: F401
    import callbacks.components.search  # noqa: F401
    import callbacks.components.similar  # noqa: F401
    import callbacks.components.tables  # noqa: F401
    import callbacks.components.timeline  # noqa: F401
    import callbacks.components.urlstate  # noqa: F401
    import callbacks.contribute.collection  # noqa: F401
    import callbacks.contribute.index  # noqa: F401
    import callbacks.contribute.new  # noqa: F401
    import callbacks.decode  # noqa: F401
    import callbacks.decode_result  # noqa: F401
    import callbacks.home  # noqa: F401
    import callbacks.layout  # noqa: F401
    import callbacks.movie  # noqa: F401
    import callbacks.movie_annotations  # noqa: F401
    import callbacks.synchrony  # noqa: F401
    import callbacks.system  # noqa: F401
    import callbacks.viewer  # noqa: F401
    from callbacks.viewer import register_viewer_callbacks

    register_viewer_callbacks(app)

    @app.callback(dash.Output("noop-out", "data"), dash.Input("noop-in", "data"), prevent_initial_call=True)
    def _noop(value):
        """Does nothing: the baseline that bench/browse.py compares browse callbacks with."""
        return value
