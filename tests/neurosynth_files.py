"""A small synthetic Neurosynth v7 release, written in the real files' layout, for the reference tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline.decoding import neurosynth as ns

# The columns of the release's coordinates.tsv.gz and metadata.tsv.gz, in order.
COORDINATE_COLUMNS = ["id", "table_id", "table_num", "peak_id", "x", "y", "z"]
METADATA_COLUMNS = ["id", "doi", "space", "title", "authors", "year", "journal"]


def write_neurosynth_v7(directory: str | Path, studies: Sequence[Mapping[str, Any]], vocabulary: Sequence[str]) -> None:
    """Write the four Neurosynth v7 files, in the release's layout, for a small synthetic database.

    Parameters
    ----------
    directory : str or pathlib.Path
        Created if missing; the files are named as in ``NEUROSYNTH_V7_FILES``.
    studies : sequence of mapping
        One mapping per study: ``id`` (required), ``peaks`` (sequence of ``(x, y, z)`` mm, default none),
        ``space`` (``"MNI"`` default, or ``"TAL"``), ``terms`` (mapping term -> tf-idf, default empty) and
        optionally ``doi``, ``title``, ``authors``, ``year``, ``journal``.
    vocabulary : sequence of str
        Terms in feature-column order.

    Raises
    ------
    ValueError
        For repeated study ids or terms, a study term not in ``vocabulary``, or a peak that is not 3 numbers.
    """
    directory = Path(directory)
    vocabulary = [str(t) for t in vocabulary]
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("vocabulary repeats terms")
    if any(not t or "\n" in t or t != t.strip() for t in vocabulary):
        raise ValueError("vocabulary terms must be non-empty single lines without surrounding spaces")
    col_of = {t: j for j, t in enumerate(vocabulary)}

    coord_rows: list[dict[str, Any]] = []
    meta_rows: list[dict[str, Any]] = []
    feat_rows: list[int] = []
    feat_cols: list[int] = []
    feat_vals: list[float] = []
    seen: set[str] = set()
    peak_id = 0
    for i, study in enumerate(studies):
        if "id" not in study:
            raise ValueError(f"study #{i} has no 'id'")
        sid = str(study["id"])
        if sid in seen:
            raise ValueError(f"study id {sid!r} repeats")
        seen.add(sid)
        for xyz in study.get("peaks", ()):
            xyz = np.asarray(xyz, dtype=float).ravel()
            if xyz.shape != (3,):
                raise ValueError(f"study {sid!r}: peak {xyz.tolist()} is not (x, y, z)")
            peak_id += 1
            coord_rows.append(
                {
                    "id": sid,
                    "table_id": i + 1,
                    "table_num": 1,
                    "peak_id": peak_id,
                    "x": xyz[0],
                    "y": xyz[1],
                    "z": xyz[2],
                }
            )
        meta_rows.append(
            {
                "id": sid,
                "doi": study.get("doi", ""),
                "space": study.get("space", "MNI"),
                "title": study.get("title", f"Synthetic study {i + 1}"),
                "authors": study.get("authors", "Doe J"),
                "year": study.get("year", 2018),
                "journal": study.get("journal", "Synthetic Journal"),
            }
        )
        for term, value in dict(study.get("terms", {})).items():
            if term not in col_of:
                raise ValueError(f"study {sid!r}: term {term!r} is not in the vocabulary")
            if value:
                feat_rows.append(i)
                feat_cols.append(col_of[term])
                feat_vals.append(float(value))

    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(coord_rows, columns=COORDINATE_COLUMNS).to_csv(
        directory / ns.NEUROSYNTH_V7_FILES["coordinates"],
        sep="\t",
        index=False,
        lineterminator="\n",
        compression="gzip",
    )
    pd.DataFrame(meta_rows, columns=METADATA_COLUMNS).to_csv(
        directory / ns.NEUROSYNTH_V7_FILES["metadata"],
        sep="\t",
        index=False,
        lineterminator="\n",
        compression="gzip",
    )
    features = sparse.csc_matrix(
        (np.asarray(feat_vals, dtype=np.float64), (feat_rows, feat_cols)), shape=(len(meta_rows), len(vocabulary))
    )
    sparse.save_npz(directory / ns.NEUROSYNTH_V7_FILES["features"], features, compressed=True)
    (directory / ns.NEUROSYNTH_V7_FILES["vocabulary"]).write_text("\n".join(vocabulary), encoding="utf-8")


SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "neurosynth-sample"
SAMPLE_PREFIX = "data-neurosynth_version-7"
# A Talairach study of the sample (metadata space "TAL") and its first peak as the file gives it.
SAMPLE_TAL_STUDY = "9185551"


def write_neurosynth_repository(
    directory: str | Path, topics: Sequence[int] = (50, 100), floor: float = 1e-3
) -> dict[str, list[str]]:
    """Lay NiMARE's bundled Neurosynth sample out as the ``neurosynth-data`` repository: the tf-idf terms as
    shipped and, side by side, LDA vocabularies renamed from them.

    A topic vocabulary ``LDA<n>`` takes the sample's first ``n`` tf-idf columns (the 100 of the sample repeat when
    ``n`` is larger) plus ``floor``, each study's row scaled to sum to 1: like the release's topic weights, never 0
    and summing to 1, so a low threshold gives every study every topic. Topic ``i`` is labelled
    ``i_<term>_<term>_<term>`` in the vocabulary, and ``keys.tsv`` lists ``i``, a weight and its words.

    Parameters
    ----------
    directory : str or pathlib.Path
        Created if missing.
    topics : sequence of int
        Numbers of topics of the LDA vocabularies to write.
    floor : float
        Added to every tf-idf value before the rows are scaled.

    Returns
    -------
    dict of str to list of str
        Every vocabulary (``terms``, ``LDA50``, ...) with its labels as written in ``vocabulary.txt``.
    """
    import shutil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for source in SAMPLE_DIR.glob(f"{SAMPLE_PREFIX}_*"):
        shutil.copyfile(source, directory / source.name)
    terms = (SAMPLE_DIR / f"{SAMPLE_PREFIX}_vocab-terms_vocabulary.txt").read_text(encoding="utf-8").split("\n")
    terms = [t for t in terms if t]
    tfidf = sparse.load_npz(SAMPLE_DIR / f"{SAMPLE_PREFIX}_vocab-terms_source-abstract_type-tfidf_features.npz")
    dense = np.asarray(tfidf.todense(), dtype=np.float64)
    written = {"terms": terms}
    for n in topics:
        columns = [i % dense.shape[1] for i in range(n)]
        weights = dense[:, columns] + floor
        weights /= weights.sum(axis=1, keepdims=True)
        words = [[terms[(i + k) % len(terms)] for k in range(5)] for i in columns]
        labels = [f"{i}_{'_'.join(w[:3])}" for i, w in enumerate(words)]
        name = f"{SAMPLE_PREFIX}_vocab-LDA{n}"
        sparse.save_npz(
            directory / f"{name}_source-abstract_type-weight_features.npz", sparse.csc_matrix(weights), compressed=True
        )
        (directory / f"{name}_vocabulary.txt").write_text("\n".join(labels), encoding="utf-8")
        (directory / f"{name}_keys.tsv").write_text(
            "".join(f"{i}\t0.01\t{' '.join(w)}\n" for i, w in enumerate(words)), encoding="utf-8"
        )
        (directory / f"{name}_metadata.json").write_text(
            f'{{"name": "sample-topics-{n}", "description": "test topics", "n_topics": {n}}}', encoding="utf-8"
        )
        written[f"LDA{n}"] = labels
    return written
