"""A movie with a timeline of real shape at a size a test affords: a 2-hour film watched in 8 overlapping runs,
a few components with time courses, and annotation sets with hundreds of labels (spaces, punctuation, non-Latin
letters, a label of digits only) and thousands of events, some of them overlapping runs of one label.

Component 0 follows :data:`LATE_LABEL` (the last label of the last set in display order), component 1 follows
:data:`EARLY_LABEL`; the other components are noise. Everything is seeded.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from tests.services import component_maps, write_nifti

MOVIE = "Long Film"
TR = 3.0
RUN_VOLUMES = 300  # 15 min runs
OVERLAP_VOLUMES = 5  # each run starts 15 s before the previous one ends
N_RUNS = 8
SUBJECTS = 2
N_COMPONENTS = 5
EARLY_LABEL = "FORREST (V.O.)"
LATE_LABEL = "Ωmega: zebra crossing (night)"
SETS = ("A characters", "B locations", "C scenes")  # display order is by name
NAMES = ("café", "Bubba's mother's dining room", "LT. DAN", "東京", "Сталкер", "a/b?c#d", "100% & more+")


def runs() -> list[tuple[float, int]]:
    step = (RUN_VOLUMES - OVERLAP_VOLUMES) * TR
    return [(k * step, RUN_VOLUMES) for k in range(N_RUNS)]


def duration_s() -> float:
    start, n = runs()[-1]
    return start + n * TR


@dataclass
class Annotations:
    """Per set: (onset, duration, label) events, and the TSV text of each set."""

    events: dict[str, list[tuple[float, float, str]]]

    def tsv(self, name: str) -> str:
        lines = [f"{onset:.2f}\t{duration:.2f}\t{label}" for onset, duration, label in self.events[name]]
        return "onset\tduration\ttrial_type\n" + "\n".join(lines) + "\n"

    def labels(self) -> list[tuple[str, str]]:
        return [(name, label) for name in SETS for label in sorted({e[2] for e in self.events[name]})]


def make_annotations(n_labels: int = 540, n_events: int = 3600, seed: int = 7) -> Annotations:
    """``n_labels`` labels over the three sets (at least 6), ``n_events`` events (at least 4 per label); the two
    designed labels have many events each and :data:`EARLY_LABEL` has overlapping runs of events."""
    rng = np.random.default_rng(seed)
    end = duration_s() - 30
    per_set = [[] for _ in SETS]
    for i in range(max(0, n_labels - 2)):
        text = f"{NAMES[i % len(NAMES)]} {i}" if i % 3 else f"scene {i:03d} (int.)"
        per_set[i % len(SETS)].append(str(i) if i == 5 else text)  # one label of digits only
    per_set[0].append(EARLY_LABEL)
    per_set[-1].append(LATE_LABEL)
    events: dict[str, list[tuple[float, float, str]]] = {name: [] for name in SETS}
    designed = {EARLY_LABEL: 240, LATE_LABEL: 240}
    others = sum(len(labels) for labels in per_set) - 2
    share = max(4, (n_events - sum(designed.values())) // max(1, others))
    for name, labels in zip(SETS, per_set):
        for label in labels:
            count = designed.get(label, share)
            onsets = np.sort(rng.uniform(0, end, count))
            durations = rng.uniform(2, 12, count)
            if label == EARLY_LABEL:  # runs of overlapping events: each one starts before the previous ends
                onsets = np.sort(np.concatenate([onsets[::2], onsets[::2] + 1.0]))[:count]
            events[name] += [(float(o), float(d), label) for o, d in zip(onsets, durations)]
        events[name].sort()
    return Annotations(events)


def courses(annotations: Annotations, seed: int = 3) -> np.ndarray:
    """(rows, components) time courses: component 0 follows LATE_LABEL, 1 follows EARLY_LABEL, the rest noise."""
    from pipeline.temporal.decoding import label_regressors

    rng = np.random.default_rng(seed)
    wanted = {}
    for name in SETS:
        for onset, duration, label in annotations.events[name]:
            if label in (EARLY_LABEL, LATE_LABEL):
                wanted.setdefault(label, []).append((onset, duration))
    grouped = {
        label: (np.array([o for o, _ in ev]), np.array([d for _, d in ev]), np.ones(len(ev)))
        for label, ev in wanted.items()
    }
    names, x = label_regressors(grouped, TR, runs())
    rows = RUN_VOLUMES * N_RUNS
    out = rng.standard_normal((rows * SUBJECTS, N_COMPONENTS)).astype(np.float32)
    for column, label in ((0, LATE_LABEL), (1, EARLY_LABEL)):
        reg = x[:, names.index(label)]
        out[:, column] += np.tile((reg - reg.mean()) / reg.std(), SUBJECTS) * 2.0
    return out


def melodic_zip(tmp_path: Path, mix: np.ndarray) -> Path:
    ica = tmp_path / "ica"
    ica.mkdir(exist_ok=True)
    write_nifti(ica / "melodic_IC.nii.gz", component_maps(mix.shape[1], seed=5))
    np.savetxt(ica / "melodic_mix", mix, fmt="%.6e", delimiter="  ")
    path = tmp_path / "long.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member in sorted(ica.iterdir()):
            zf.write(member, f"study/groupICA.ica/{member.name}")
    return path


@dataclass
class Study:
    movie_id: int
    slug: str
    collection_id: int
    uuids: list[str]  # by volume index
    annotations: Annotations


def build_study(tmp_path: Path, n_labels: int = 540, n_events: int = 3600, n_shifts: int = 200) -> Study:
    """Ingest the study into the current data directory (see ``tests.conftest.data_dir``) and decode it in time."""
    from accounts.users import create_user
    from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
    from pipeline.curation.ingest import ingest
    from pipeline.jobs.lifecycle import create_job
    from pipeline.temporal.annotations import add_annotation_set, decode_collection_in_time
    from pipeline.temporal.timing import Timing
    from store.db import session_scope
    from store.models import Component

    annotations = make_annotations(n_labels, n_events)
    archive = melodic_zip(tmp_path, courses(annotations))
    timing = Timing.parse(TR, ",".join(f"{s:g}:{n}" for s, n in runs()), SUBJECTS)
    with session_scope() as session:
        user = create_user(session, "long@example.org", "a long password 1")
        film = get_or_create_movie(session, MOVIE)
        collection = create_collection(session, user, film, "Long collection")
        collection.timing = timing.to_dict()
        add_upload(session, collection, archive, archive.name)
        movie_id, slug, collection_id = film.id, film.slug, collection.id
        job_id = create_job(session, "ingest", collection.id, user.id).id
    result = ingest(job_id)
    assert not result.errors, result.errors
    with session_scope() as session:
        from store.models import Movie, User

        user = session.scalar(select(User).where(User.email == "long@example.org"))
        film = session.get(Movie, movie_id)
        for name in SETS:
            add_annotation_set(session, user, film, name, annotations.tsv(name), "events.tsv")
    decode_collection_in_time(collection_id, n_shifts=n_shifts)
    with session_scope() as session:
        uuids = list(
            session.scalars(
                select(Component.uuid).where(Component.collection_id == collection_id).order_by(Component.volume_index)
            )
        )
    return Study(movie_id, slug, collection_id, uuids, annotations)
