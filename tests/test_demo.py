"""The demo data set: components built from the active reference's term maps look like ICA networks (a handful of
clusters at |z| > 3) and decode to the map they were built from; per-subject time courses have designed shared
fractions that leave-one-out ISC recovers in order; keywords find their maps in any reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sqlalchemy import select

from pipeline.anatomy.clusters import check_settings, cluster_table
from pipeline.curation.demo import (
    DEMO_COLLECTIONS,
    DEMO_STRETCH_S,
    DEMO_TIMING,
    DemoReference,
    demo_component_maps,
    demo_events_tsv,
    demo_primary_terms,
    demo_sharing,
    demo_timecourses,
)
from pipeline.decoding.decode import decode
from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map, builtin_term_maps
from pipeline.maps.files import load_map
from pipeline.synchrony.isc import fisher_mean, isc, subjects_array
from store.artifacts import load_vector
from store.db import session_scope
from store.models import Collection, Component

MAX_CLUSTERS = 12  # "a handful": at |z| > 3, clusters of 10 voxels or more (the cluster table's default)


def stored_components() -> list[tuple[str, int, str, str, np.ndarray | None]]:
    """(collection slug, volume index, best term, map key, the collection's stored time courses) per component."""
    with session_scope() as session:
        rows = session.execute(
            select(Collection.slug, Component).join(Collection).order_by(Collection.slug, Component.volume_index)
        ).all()
        return [
            (
                slug,
                c.volume_index,
                c.best_term.name,
                c.storage_key,
                load_vector(c.timecourse.storage_key) if c.timecourse else None,
            )
            for slug, c in rows
        ]


def test_demo_components_decode_to_their_main_map_and_have_a_handful_of_clusters(demo_dir):
    with session_scope() as session:
        reference = DemoReference.from_session(session)
    primaries = {spec.slug: demo_primary_terms(spec, reference) for spec in DEMO_COLLECTIONS}
    components = stored_components()
    assert len(components) == sum(spec.n_components for spec in DEMO_COLLECTIONS)
    settings = check_settings(threshold=3.0)
    counts = []
    for slug, volume, best, key, _ in components:
        assert best == primaries[slug][volume], (slug, volume)
        data = load_map(key)
        rows = cluster_table(data, settings)
        counts.append(len(rows))
        assert 1 <= len(rows) <= MAX_CLUSTERS, (slug, volume, len(rows))
        assert rows[0]["sign"] == "positive" and rows[0]["peak_value"] > 6  # the network is the positive tail
        assert 5 < float(data.max()) < 20 and float(data.min()) > -12  # MELODIC-like z range
    assert np.mean(counts) <= 8


def test_demo_maps_are_deterministic_and_follow_the_reference_given():
    """The same seed gives the same maps; another reference (the built-in maps under topic-like names, in another
    order) gives components built from its maps, found by keyword or, for a keyword no name holds, by the maps'
    correlation with the keyword's canonical peaks."""
    spec = DEMO_COLLECTIONS[2]  # default mode, memory, social, language, visual
    builtin = DemoReference.from_maps(builtin_term_maps())
    first = demo_component_maps(spec, 3, builtin)
    np.testing.assert_array_equal(first, demo_component_maps(spec, 3, builtin))
    assert demo_primary_terms(spec, builtin)[:5] == list(spec.terms)

    renamed = {
        "default mode": "0 · network state resting",  # no keyword in the name: found by its peaks
        "memory": "33 · memory retrieval encoding",
        "social": "8 · mpfc social medial",
        "language": "37 · language reading word",
        "visual": "42 · visual cortex sensory",
        "motion": "45 · motion perception visual",  # "visual" comes later in its name than in topic 42's
        "pain": "32 · pain somatosensory stimulation",
    }
    topics = DemoReference.from_maps(
        (renamed[term], builtin_term_map(tuple(BUILTIN_PEAKS[term]))) for term in reversed(list(renamed))
    )
    assert demo_primary_terms(spec, topics)[:5] == [renamed[t] for t in spec.terms]
    maps = demo_component_maps(spec, 3, topics)
    assert maps.shape == first.shape
    for i, term in enumerate(spec.terms):  # built from the renamed maps: each correlates best with its own
        assert builtin.names[int(np.argmax(decode(maps[i], builtin.matrix)[0]))] == term


@pytest.mark.parametrize("seed,spec", list(enumerate(DEMO_COLLECTIONS, start=1)), ids=lambda v: getattr(v, "slug", ""))
def test_leave_one_out_isc_recovers_the_designed_shared_fractions(seed, spec):
    courses = demo_timecourses(spec, demo_events_tsv(spec.movie), seed)
    assert courses.shape == (DEMO_TIMING.rows, spec.n_components) and DEMO_TIMING.subjects >= 3
    data = subjects_array(courses, DEMO_TIMING.subjects)  # (volumes, components, subjects)
    observed = fisher_mean(isc(data), axis=0)
    sharing = demo_sharing(spec)
    steady = [i for i, s in enumerate(sharing) if not s.stretch]
    fractions = [sharing[i].fraction for i in steady]
    assert len(set(fractions)) >= 3  # strongly, partly and not shared
    assert spearmanr(fractions, observed[steady]).statistic >= 0.9
    for i in steady:
        if sharing[i].fraction == 0:
            assert abs(observed[i]) < 0.1
        if sharing[i].fraction >= 0.6:
            assert observed[i] > 0.5

    (stretch,) = [i for i, s in enumerate(sharing) if s.stretch]
    times = DEMO_TIMING.movie_times()[: DEMO_TIMING.rows_per_subject]
    inside = (times >= DEMO_STRETCH_S[0]) & (times < DEMO_STRETCH_S[1])
    during = fisher_mean(isc(data[inside][:, [stretch]]), axis=0)[0]
    outside = fisher_mean(isc(data[~inside][:, [stretch]]), axis=0)[0]
    assert during > 0.6 and abs(outside) < 0.15


def test_the_stored_demo_time_courses_are_the_designed_ones(demo_dir):
    """Ingest keeps the per-subject rows as generated (subject-major), so the site's ISC sees the designed
    sharing."""
    by_slug = {}
    for slug, _, _, _, courses in stored_components():
        assert courses is not None and courses.shape[0] == DEMO_TIMING.rows
        by_slug[slug] = courses
    for seed, spec in enumerate(DEMO_COLLECTIONS, start=1):
        expected = demo_timecourses(spec, demo_events_tsv(spec.movie), seed)
        np.testing.assert_allclose(by_slug[spec.slug], expected, atol=1e-5)


def test_the_demo_site_shows_the_isc_it_was_designed_with(demo_dir):
    """Loading the demo computes each collection's ISC as an ingest does: the stored values follow the designed
    shared fractions, the strongly shared components are significant and the unshared ones are not."""
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Collection, Component, ComponentISC

    unshared_significant, unshared = 0, 0
    with session_scope() as session:
        for spec in DEMO_COLLECTIONS:
            rows = session.execute(
                select(Component.volume_index, ComponentISC.isc, ComponentISC.q, ComponentISC.n_subjects)
                .join(ComponentISC, ComponentISC.component_id == Component.id)
                .join(Collection, Collection.id == Component.collection_id)
                .where(Collection.slug == spec.slug)
                .order_by(Component.volume_index)
            ).all()
            assert len(rows) == spec.n_components, spec.slug
            assert {r.n_subjects for r in rows} == {DEMO_TIMING.subjects}
            sharing = demo_sharing(spec)
            steady = [i for i, s in enumerate(sharing) if not s.stretch]
            stored = [rows[i].isc for i in steady]
            assert spearmanr([sharing[i].fraction for i in steady], stored).statistic >= 0.9, spec.slug
            for i in steady:
                if sharing[i].fraction >= 0.6:
                    assert rows[i].q < 0.05, (spec.slug, i)
                if sharing[i].fraction == 0:
                    assert abs(rows[i].isc) < 0.15, (spec.slug, i)
                    unshared += 1
                    unshared_significant += rows[i].q < 0.05
    assert unshared >= 6 and unshared_significant <= 1  # chance alone may pass one of a dozen unshared components
