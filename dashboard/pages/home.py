"""Home page."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Collection, Component, Movie, ReferenceSet, Term

dash.register_page(__name__, path="/", title="INcDb: Internet Neurocinematics Database")


def public_counts() -> dict[str, int]:
    with session_scope() as session:
        public = Collection.visibility == "public"
        return {
            "movies": session.scalar(select(func.count(func.distinct(Collection.movie_id))).where(public)) or 0,
            "collections": session.scalar(select(func.count(Collection.id)).where(public)) or 0,
            "components": session.scalar(select(func.count(Component.id)).join(Collection).where(public)) or 0,
            "terms": session.scalar(select(func.count(Term.id)).join(ReferenceSet)
                                    .where(ReferenceSet.active.is_(True))) or 0,
        }


def layout(**_query) -> html.Div:
    counts = public_counts()
    with session_scope() as session:
        movies = session.scalars(select(Movie).order_by(Movie.created.desc()).limit(5)).all()
        titles = [m.title for m in movies]
    return html.Div([
        html.H1("Brain maps of people watching movies", className="h2"),
        html.P("Explore independent components recorded during full-length movies, decoded against term maps.",
               className="lead"),
        dbc.Row([dbc.Col(dbc.Card(dbc.CardBody([html.Div(str(n), className="display-6", id=f"count-{k}"),
                                                html.Div(k.capitalize(), className="text-muted")])), md=3)
                 for k, n in counts.items()], className="g-3 mb-4"),
        html.H2("Recently added movies", className="h4"),
        html.Ul([html.Li(t) for t in titles]) if titles else html.P("No movies yet.", className="text-muted"),
    ])
