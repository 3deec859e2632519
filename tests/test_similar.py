"""Similar components (pipeline.decoding.similar): exact r, visibility, the index kept in step with ingest and
removal, the
rebuild, and the API route."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from pipeline.decoding import similar
from pipeline.decoding.decode import masked
from pipeline.maps.files import load_map
from store.db import session_scope
from store.models import Collection, Component, ComponentVector, SimilarityBasis, User


class Anonymous:
    is_authenticated = False


def corrcoef(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def component_rows(session, *uuids: str) -> list[np.ndarray]:
    keys = dict(session.execute(select(Component.uuid, Component.storage_key).where(Component.uuid.in_(uuids))).all())
    return [masked(load_map(keys[u]))[0] for u in uuids]


def user(session, email: str) -> User:
    found = session.scalar(select(User).where(User.email == email))
    session.expunge(found)
    return found


# --- the search itself, on synthetic vectors -------------------------------------------------------------------


@pytest.mark.parametrize("noise", [0.05, 0.4])
def test_search_returns_the_exact_best_with_exact_r(noise):
    """Rows near a 40-dimensional basis of a 400-dimensional space: the bound makes the search provably exact, and
    the r it shows are the exact inner products; the closer the rows are to the basis, the fewer exact reads."""
    rng = np.random.default_rng(3)
    n, space, dims = 3000, 400, 40
    basis = np.linalg.qr(rng.standard_normal((space, dims)))[0]
    inside = rng.standard_normal((n, dims)) * np.linspace(3, 0.2, dims)
    vectors = inside @ basis.T + noise * rng.standard_normal((n, space))
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    reduced = (vectors @ basis).astype(np.float32)
    index = similar.IndexView(
        1,
        "",
        np.arange(n),
        np.arange(n) % 7,
        reduced,
        np.sqrt(np.clip(1 - (reduced.astype(np.float64) ** 2).sum(1), 0, 1)).astype(np.float32),
    )
    query = vectors[11] + 0.8 * vectors[12] + noise * rng.standard_normal(space)
    query -= query.mean()
    query /= np.linalg.norm(query)
    allowed = index.collection_ids != 3
    stats = similar.SearchStats()
    found = similar.search(
        index,
        query,
        (query @ basis).astype(np.float32),
        allowed,
        10,
        lambda ids: [vectors[i] for i in ids],
        max_exact=3000,
        stats=stats,
    )
    exact = vectors @ query
    exact[~allowed] = -np.inf
    best = np.argsort(-exact)[:10]
    assert [m.component_id for m in found] == best.tolist()
    np.testing.assert_allclose([m.r for m in found], exact[best], atol=1e-12)
    assert stats.certain
    if noise < 0.1:
        assert stats.exact_read <= 64  # a tight bound spares almost every exact read
    assert all(m.component_id % 7 != 3 for m in found)


def test_fit_basis_is_orthonormal_and_spans_the_rows():
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((30, 2000)).astype(np.float32)
    basis = similar.fit_basis(rows, dims=50)
    assert basis.shape == (2000, 30)  # only as many directions as rows
    np.testing.assert_allclose(basis.T @ basis, np.eye(30), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows @ basis, axis=1), np.linalg.norm(rows, axis=1), rtol=1e-4)


# --- the catalogue ---------------------------------------------------------------------------------------------


def test_every_demo_component_is_indexed_and_its_neighbours_have_exact_r(demo_dir):
    similar.forget_index()
    with session_scope() as session:
        n = session.scalar(select(func.count(Component.id)))
        assert session.scalar(select(func.count(ComponentVector.id))) == n == 60
        assert session.scalar(select(func.count(SimilarityBasis.id)).where(SimilarityBasis.active)) == 1
        comp = session.scalar(
            select(Component).join(Collection).where(Collection.visibility == "public").order_by(Component.id)
        )
        found = similar.similar_to_component(session, Anonymous(), comp, limit=10)
        assert len(found) == 10 and comp.uuid not in {f["uuid"] for f in found}
        assert [f["r"] for f in found] == sorted((f["r"] for f in found), reverse=True)
        own, *others = component_rows(session, comp.uuid, *(f["uuid"] for f in found))
        for f, row in zip(found, others):
            assert f["r"] == pytest.approx(corrcoef(own, row), abs=1e-5)
            assert f["movie"] and f["collection_slug"] and f["best_term"]
        # Every other public component scores at most the tenth's r: the list is the true top 10.
        rest = (
            session.execute(
                select(Component.uuid)
                .join(Collection)
                .where(
                    Collection.visibility == "public",
                    Component.id != comp.id,
                    Component.uuid.not_in([f["uuid"] for f in found]),
                )
            )
            .scalars()
            .all()
        )
        worst = min(f["r"] for f in found)
        assert max(corrcoef(own, row) for row in component_rows(session, *rest)) <= worst + 1e-6
        other = similar.similar_to_component(session, Anonymous(), comp, limit=10, other_collections_only=True)
        assert other and all(f["collection_slug"] != comp.collection.slug for f in other)


def test_a_private_component_is_only_in_its_owners_and_admins_lists(demo_dir):
    """The private demo collection's components never appear for an anonymous visitor or another curator, even
    as the best match of their own map; its owner and an administrator do see them."""
    from accounts.users import create_user
    from pipeline.curation.demo import DEMO_OWNER, DEMO_PRIVATE_OWNER

    similar.forget_index()
    with session_scope() as session:
        admin_id = create_user(session, "root@example.org", "correct horse battery", role="admin").id
    with session_scope() as session:
        private = session.scalars(select(Component).join(Collection).where(Collection.visibility == "private")).all()
        private_uuids = {c.uuid for c in private}
        viewers = {
            "anonymous": Anonymous(),
            "curator": user(session, DEMO_OWNER),
            "owner": user(session, DEMO_PRIVATE_OWNER),
            "admin": session.get(User, admin_id),
        }
        for comp in private[:3]:
            unit = similar.load_exact(comp.uuid)
            for name, viewer in viewers.items():
                found = {f["uuid"] for f in similar.similar_components(session, viewer, unit, limit=100)}
                if name in ("anonymous", "curator"):
                    assert not found & private_uuids, name
                else:
                    assert comp.uuid in found, name  # its own map: r = 1


def test_the_index_follows_deletion_reprocessing_and_rebuild(demo_dir, capsys):
    from pipeline.__main__ import main
    from pipeline.curation.catalog import delete_collection
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import run_job

    similar.forget_index()
    with session_scope() as session:
        public = session.scalars(
            select(Collection).where(Collection.visibility == "public").order_by(Collection.id)
        ).all()
        gone, again = public[0], public[1]
        gone_ids = {c.id for c in gone.components}
        gone_id, again_id = gone.id, again.id
        probe = session.scalar(select(Component).where(Component.collection_id == public[2].id))
        assert len(similar.current_index(session, max_age_s=0).component_ids) == 60
    delete_collection(gone_id)
    with session_scope() as session:
        index = similar.current_index(session, max_age_s=0)
        assert index.size == 60 - len(gone_ids) and not set(index.component_ids.tolist()) & gone_ids
        found = similar.similar_to_component(session, Anonymous(), probe, limit=100)
        assert not {f["collection_slug"] for f in found} & {gone.slug}
        before = {c.id for c in session.get(Collection, again_id).components}
        job_id = create_job(session, "ingest", again_id).id
    run_job(job_id)  # reprocessing replaces the collection's rows (same components)
    with session_scope() as session:
        index = similar.current_index(session, max_age_s=0)
        assert index.size == 60 - len(gone_ids)
        assert before <= set(index.component_ids.tolist())
        assert session.scalar(select(func.count(ComponentVector.id))) == index.size
        first = [(f["uuid"], round(f["r"], 6)) for f in similar.similar_to_component(session, Anonymous(), probe)]
    assert main(["similar", "rebuild"]) == 0
    assert "similarity index rebuilt" in capsys.readouterr().out
    with session_scope() as session:
        bases = session.scalars(select(SimilarityBasis)).all()
        assert len(bases) == 1 and bases[0].active
        assert similar.current_index(session, max_age_s=0).size == 60 - len(gone_ids)
        second = [(f["uuid"], round(f["r"], 6)) for f in similar.similar_to_component(session, Anonymous(), probe)]
    assert second == first  # a new basis finds the same components with the same exact r


def test_similar_api_route(web, demo_dir):
    similar.forget_index()
    client = web.server.test_client()
    with session_scope() as session:
        comp = session.scalar(select(Component).join(Collection).where(Collection.visibility == "public"))
        private = session.scalar(select(Component).join(Collection).where(Collection.visibility == "private"))
        cuuid, puuid = comp.uuid, private.uuid
    body = client.get(f"/api/components/{cuuid}/similar?limit=5").get_json()
    assert len(body["items"]) == 5 and {"uuid", "r", "movie", "collection", "best_term"} <= set(body["items"][0])
    assert cuuid not in {i["uuid"] for i in body["items"]}
    assert len(client.get(f"/api/components/{cuuid}/similar").get_json()["items"]) == 20
    assert client.get(f"/api/components/{cuuid}/similar?limit=101").status_code == 400
    assert client.get(f"/api/components/{cuuid}/similar?limit=x").status_code == 400
    assert client.get(f"/api/components/{puuid}/similar").status_code == 404
    assert client.get("/api/components/nope/similar").status_code == 404
