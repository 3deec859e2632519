"""A study of real shape, at any size: a long film watched in overlapping runs, a temporal-concatenation group ICA
of several subjects zipped as a whole MELODIC ``.gica`` folder, and several annotation sets of the film with
hundreds of labels whose names carry every awkward character class.

:data:`FULL` is the size of a published study (a 2-hour film in 8 runs of about 450 volumes at TR 2 s that overlap
by 16 s, 15 subjects concatenated: 53,985 rows; 70 components; 544 labels in three sets with about 6,000 events);
:data:`SMALL` keeps the shape and every label at a size a test can afford. :func:`write_study` writes it all and
returns a :class:`Study` describing it, including the designed links: components whose time courses follow a label
through the SPM HRF (the same model the app's temporal decoding uses), so a test or benchmark can check that they
are found.

Used by ``tests/test_real_study_browser.py`` and ``bench/study.py``; generating needs no database or settings.
"""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.temporal.decoding import label_regressors
from pipeline.temporal.events import events_by_label, read_events
from pipeline.temporal.timing import Timing


@dataclass(frozen=True)
class Shape:
    """The size of a study. Runs split ``volumes`` as evenly as possible; each run starts ``overlap_s`` before the
    previous one ends (in movie time)."""

    volumes: int = 3599  # per subject, all runs
    runs: int = 8
    tr: float = 2.0
    overlap_s: float = 16.0
    subjects: int = 15
    components: int = 70
    labels: int = 544
    events: int = 6000
    annotation_sets: int = 3
    links: int = 6  # components that follow a label
    seed: int = 1994


FULL = Shape()
SMALL = Shape(volumes=240, runs=4, subjects=3, components=8, labels=520, events=2400, links=3)

# Labels that carry each character class a label page, its links and the API must round-trip; the first ones are
# the designed links' labels (a link needs a label with enough events to be found).
SPECIAL_LABELS = (
    "FORREST (V.O.)",
    "embattled jungle",
    "Сталкер",
    "LT. DAN",
    "Bubba's mother's dining room",
    "東京タワー",
    "AC/DC poster",
    "shot #12",
    "why? because",
    "100% cotton",
    "Q&A session",
    "C++ lecture",
    "1994",
    "42",
    "Jenny / Forrest",
    "café au lait",
    "مطر",
    "Ω (omega) #3 & 50%?",
    "mama's box.of.chocolates",
    "a+b=c",
)
# Fillers: a place or a character, a number and a suffix cycling through the same character classes.
_WORDS = (
    "jungle",
    "bench",
    "bus stop",
    "Savannah street",
    "ping-pong table",
    "shrimp boat",
    "Jenny",
    "Bubba",
    "Mrs. Gump",
    "Lt. Dan",
    "Washington mall",
    "college field",
    "diner",
    "army base",
    "rain",
    "highway",
)
_SUFFIXES = ("", " (night)", ".", "'s", "/int", " #2", "?", " 50%", " & co", " +1", " – день", " 夜")
_SETS = ("Speakers and voice-over", "Locations & settings", "Objects, emotions / misc.")


@dataclass
class Study:
    """What :func:`write_study` wrote."""

    shape: Shape
    timing: Timing
    archive: Path  # the zipped .gica folder
    annotations: list[tuple[str, Path]]  # (set name, events TSV)
    links: dict[int, str]  # 0-based component (volume) index -> the label its time course follows
    labels: list[str] = field(default_factory=list)  # every label, in no particular order
    events: int = 0

    @property
    def runs_text(self) -> str:
        """The runs as the collection form takes them (``START:N,...``)."""
        return ",".join(f"{r.start_s:g}:{r.volumes}" for r in self.timing.runs)

    @property
    def label_sets(self) -> dict[str, str]:
        """label -> the name of the annotation set it is in."""
        out = {}
        for name, path in self.annotations:
            for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                out[line.split("\t")[2]] = name
        return out


def timing_of(shape: Shape) -> Timing:
    base, extra = divmod(shape.volumes, shape.runs)
    volumes = [base + (1 if i < extra else 0) for i in range(shape.runs)]
    runs, start = [], 0.0
    for n in volumes:
        runs.append(f"{start:g}:{n}")
        start = start + n * shape.tr - shape.overlap_s
    return Timing.parse(shape.tr, ",".join(runs), shape.subjects)


def label_names(n: int) -> list[str]:
    """``n`` distinct labels: the special ones, then fillers (every tenth only digits)."""
    names = list(SPECIAL_LABELS[:n])
    i = 0
    while len(names) < n:
        if i % 10 == 9:
            name = str(1000 + i)
        else:
            word = _WORDS[i % len(_WORDS)]
            name = f"{word} {i // len(_WORDS) + 1}{_SUFFIXES[i % len(_SUFFIXES)]}"
        if name not in names:
            names.append(name)
        i += 1
    return names


def _events_tsv(rng: np.random.Generator, labels: list[str], counts: dict[str, int], film_s: float) -> str:
    rows = []
    for label in labels:
        for _ in range(counts[label]):
            duration = float(rng.uniform(1.0, 12.0))
            onset = float(rng.uniform(0.0, film_s - duration))
            rows.append((onset, duration, label))
    rows.sort()
    return "onset\tduration\ttrial_type\n" + "".join(f"{o:.2f}\t{d:.2f}\t{label}\n" for o, d, label in rows)


def _blob_maps(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """ICA-like maps on the MNI152 2 mm grid: a few smooth blobs of either sign and weak noise inside the brain."""
    from pipeline.maps.grid import brain_mask

    mask = brain_mask()
    inside = np.argwhere(mask)
    grid = np.indices(mask.shape, dtype=np.float32)
    out = np.empty((shape.components,) + mask.shape, dtype=np.float32)
    for i in range(shape.components):
        data = rng.standard_normal(mask.shape).astype(np.float32) * 0.3
        for _ in range(3):
            centre = inside[rng.integers(len(inside))]
            width = float(rng.uniform(3.0, 7.0))
            d2 = sum((grid[k] - centre[k]) ** 2 for k in range(3))
            data += np.float32(rng.choice((-1, 1)) * rng.uniform(3, 8)) * np.exp(-d2 / (2 * width**2))
        out[i] = data * mask
    return out


def _save_nifti(path: Path, data: np.ndarray) -> Path:
    import nibabel as nib

    from pipeline.maps.grid import GRID_AFFINE

    volume = np.moveaxis(data, 0, -1) if data.ndim == 4 else data
    nib.save(nib.Nifti1Image(volume.astype(np.float32), GRID_AFFINE), path)
    return path


def _courses(
    shape: Shape, timing: Timing, rng: np.random.Generator, links: dict[int, str], tsv: dict[str, str]
) -> np.ndarray:
    """(rows, components) float32: AR(1) noise per subject, plus the HRF-convolved label for linked components."""
    runs = [(r.start_s, r.volumes) for r in timing.runs]
    events = {}
    for text in tsv.values():
        for label, triple in events_by_label(read_events(text, "events.tsv")).items():
            if label in links.values():
                events[label] = triple
    names, x = label_regressors(events, timing.tr, runs)
    rows = timing.rows
    noise = rng.standard_normal((rows, shape.components)).astype(np.float32)
    for t in range(1, rows):  # AR(1), as BOLD noise is autocorrelated; restarts do not matter here
        noise[t] += 0.3 * noise[t - 1]
    for component, label in links.items():
        signal = x[:, names.index(label)]
        signal = (signal - signal.mean()) / signal.std()
        noise[:, component] += np.tile(signal, shape.subjects).astype(np.float32) * 0.8
    return noise


def write_study(folder: Path, shape: Shape = SMALL, name: str = "forrest_groupICA", reuse: bool = False) -> Study:
    """Write ``<name>.gica.zip`` and the annotation sets' TSV files into ``folder`` (made if missing). With
    ``reuse``, an archive already there (from the same shape: the generator is deterministic) is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shape.seed)
    timing = timing_of(shape)
    last = timing.runs[-1]
    film_s = last.start_s + last.volumes * timing.tr

    labels = label_names(shape.labels)
    link_labels = labels[: shape.links]
    counts = {label: 1 for label in labels}
    spare = shape.events - len(labels) - 40 * len(link_labels)
    for label in link_labels:
        counts[label] += 40
    for j in rng.integers(len(labels), size=max(0, spare)):
        counts[labels[j]] += 1
    sets: dict[str, list[str]] = {s: [] for s in _SETS[: shape.annotation_sets]}
    names = list(sets) or [_SETS[0]]
    for i, label in enumerate(labels):
        sets[names[i % len(names)]].append(label)
    tsv = {s: _events_tsv(rng, members, counts, film_s) for s, members in sets.items()}
    annotations = []
    for i, (set_name, text) in enumerate(tsv.items()):
        path = folder / f"annotations-{i + 1}_events.tsv"
        path.write_text(text, encoding="utf-8")
        annotations.append((set_name, path))

    picks = rng.choice(shape.components, size=min(shape.links, shape.components), replace=False)
    links = {int(c): label for c, label in zip(picks, link_labels)}
    archive = folder / f"{name}.gica.zip"
    if reuse and archive.is_file():
        return Study(shape, timing, archive, annotations, links, labels, sum(counts.values()))
    work = folder / f"{name}-work"
    work.mkdir(exist_ok=True)
    try:
        maps = _blob_maps(shape, rng)
        ica = f"{name}.gica/groupmelodic.ica"
        members: dict[str, Path] = {f"{ica}/melodic_IC.nii.gz": _save_nifti(work / "ic.nii.gz", maps)}
        mask = (np.abs(maps).sum(axis=0) > 0).astype(np.float32)
        members[f"{ica}/mask.nii.gz"] = _save_nifti(work / "mask.nii.gz", mask)
        members[f"{ica}/mean.nii.gz"] = _save_nifti(work / "mean.nii.gz", mask * 1000 + maps[0])
        for i in range(shape.components):  # MELODIC's thresholded maps: mostly zeros
            thresholded = np.where(np.abs(maps[i]) > 2.5, maps[i], 0)
            members[f"{ica}/stats/thresh_zstat{i + 1}.nii.gz"] = _save_nifti(work / f"t{i + 1}.nii.gz", thresholded)
        del maps

        courses = _courses(shape, timing, rng, links, tsv)
        np.savetxt(work / "mix", courses, fmt="%.7e", delimiter="  ")
        spectra = np.abs(np.fft.rfft(courses[: shape.volumes], axis=0))[1:] ** 2
        np.savetxt(work / "ftmix", spectra, fmt="%.7e", delimiter="  ")
        del courses
        members[f"{ica}/melodic_mix"] = work / "mix"
        members[f"{ica}/melodic_FTmix"] = work / "ftmix"
        (work / "log").write_text("Melodic Version 3.15\nmelodic -i filelist -a concat --dim=70 ...\n")
        (work / "report").write_text("<html><body>MELODIC report</body></html>\n")
        (work / "stats").write_text("IC  %explained  %total\n")
        members[f"{ica}/log.txt"] = members[f"{name}.gica/log.txt"] = work / "log"
        members[f"{ica}/melodic_ICstats"] = members[f"{ica}/melodic_unmix"] = work / "stats"
        members[f"{ica}/report/00index.html"] = members[f"{name}.gica/report.html"] = work / "report"

        partial = archive.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w") as zf:
            for arcname, src in members.items():
                compress = zipfile.ZIP_STORED if arcname.endswith(".gz") else zipfile.ZIP_DEFLATED
                zf.write(src, arcname, compress_type=compress)
        partial.replace(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Study(shape, timing, archive, annotations, links, labels, sum(counts.values()))


# --- the curator's steps in a browser (Playwright page with a base URL), shared by the test and the benchmark ----


def sign_in(page, email: str, password: str, next_path: str = "/contribute/new") -> None:
    page.goto(f"/account/sign-in?next={next_path}")
    page.fill("#signin-email", email)
    page.fill("#signin-password", password)
    page.click("#signin-submit")
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))
    page.wait_for_selector("#nav-user-name")


def create_collection(page, study: Study, name: str, movie: str) -> str:
    """Fill the new-collection form with the study's timing; returns the collection's address."""
    if not page.url.endswith("/contribute/new"):
        page.goto("/contribute/new")
    page.fill("#new-name", name)
    page.fill("#new-movie", movie)
    page.fill('input[id*=\'"field":"tr"\']', f"{study.timing.tr:g}")
    page.fill("#new-runs", study.runs_text)
    page.fill("#new-subjects", str(study.timing.subjects))
    page.click("#new-submit")
    page.wait_for_url(re.compile(r".*/contribute/(?!new$)[^/?#]+$"))
    return page.url


def upload_and_process(page, study: Study, timeout_ms: int = 3_600_000) -> tuple[float, float]:
    """Confirm the licence, upload the archive through the panel and wait for processing (which starts by itself);
    returns (upload seconds, processing seconds)."""
    page.check("#coll-license-check")
    page.click("#coll-license-confirm")
    page.wait_for_selector("#coll-license-done")
    start = time.monotonic()
    with page.expect_file_chooser() as chooser:
        page.click("#coll-choose")
    chooser.value.set_files([str(study.archive)])
    page.wait_for_selector(
        f".incdb-upload-row[data-file='{study.archive.name}'][data-state='done']", timeout=timeout_ms
    )
    uploaded = time.monotonic()
    page.wait_for_selector(
        ", ".join(f"#proc-runner:has-text('Processing {end}')" for end in ("finished", "failed", "cancelled")),
        timeout=timeout_ms,
    )
    runner = page.inner_text("#proc-runner")
    if "Processing finished" not in runner:
        raise AssertionError(f"processing did not finish: {runner} / {page.inner_text('#coll-status')}")
    return uploaded - start, time.monotonic() - uploaded


def add_annotation_sets(page, movie_slug: str, study: Study, timeout_ms: int = 600_000) -> list[str]:
    """Add every annotation set of the study on the movie's annotations page, one right after the other;
    returns the page's message after each."""
    page.goto(f"/movies/{movie_slug}/annotations")
    messages = []
    for name, path in study.annotations:
        page.fill("#annot-name", name)
        page.set_input_files("#annot-file input[type=file]", str(path))
        page.wait_for_selector(f"#annot-file-name:has-text('{path.name}')")
        page.click("#annot-submit")
        page.wait_for_selector(f"#annot-message:has-text('{name}')", timeout=timeout_ms)
        messages.append(page.inner_text("#annot-message"))
    return messages


def scroll_until(page, selector: str, timeout_s: float = 180) -> None:
    """Bring the page's lazy sections into view in turn until ``selector`` is on the page: a lazy section loads when
    it is in view (once the page's viewers have loaded, or after a wait)."""
    deadline = time.monotonic() + timeout_s
    turn = 0
    while page.locator(selector).count() == 0:
        if time.monotonic() > deadline:
            texts = page.evaluate("[...document.querySelectorAll('.incdb-lazy')].map(e => e.innerText.slice(0, 200))")
            raise TimeoutError(f"{selector} did not appear within {timeout_s:.0f} s; lazy sections: {texts}")
        sections = page.locator(".incdb-lazy")
        if sections.count():
            sections.nth(turn % sections.count()).scroll_into_view_if_needed()
            turn += 1
        page.wait_for_timeout(500)
    page.locator(selector).first.scroll_into_view_if_needed()
