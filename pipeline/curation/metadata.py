"""Collection metadata: the four groups of the upload form (DESIGN section 1), with types and units.

One definition serves validation, the form and the pages that display a collection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | number | integer | choice | bool
    unit: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


GROUPS: dict[str, tuple[str, tuple[Field, ...]]] = {
    "presentation": (
        "Movie presentation",
        (
            Field("times_viewed", "Times viewed", "integer", minimum=1, maximum=100),
            Field("presentation_method", "Presentation method"),
            Field("audio_method", "Audio method"),
            Field("window_size", "Window size"),
            Field("visual_angle", "Visual angle", "number", "degrees", minimum=0, maximum=180),
            Field("triggered", "Triggered by scanner", "bool"),
            Field("video_resolution", "Video resolution"),
            Field("video_codec", "Video codec"),
            Field("audio_quality", "Audio quality"),
            Field("audio_codec", "Audio codec"),
        ),
    ),
    "participants": (
        "Participants",
        (
            Field("number", "Number of participants", "integer", minimum=1, maximum=100000),
            Field("age_min", "Youngest age", "number", "years", minimum=0, maximum=120),
            Field("age_max", "Oldest age", "number", "years", minimum=0, maximum=120),
            Field("handedness", "Handedness"),
            Field("inclusion_criteria", "Inclusion criteria"),
            Field("vision", "Vision"),
            Field("hearing", "Hearing"),
            Field("native_languages", "Native languages"),
            Field("language_proficiency", "Language proficiency"),
        ),
    ),
    "design": (
        "Design",
        (
            Field("imaging_runs", "Imaging runs", "integer", minimum=1, maximum=1000),
            Field("run_length", "Length of runs", "number", "minutes", minimum=0, maximum=600),
        ),
    ),
    "acquisition": (
        "Acquisition",
        (
            Field("scanner", "Scanner make and model"),
            Field("field_strength", "Field strength", "number", "T", minimum=0.1, maximum=20),
            Field("pulse_sequence", "Pulse sequence"),
            Field("parallel_imaging", "Parallel imaging"),
            Field("field_of_view", "Field of view", "number", "mm", minimum=1, maximum=1000),
            Field("matrix_size", "Matrix size"),
            Field("slice_thickness", "Slice thickness", "number", "mm", minimum=0.1, maximum=20),
            Field("skip_distance", "Skip distance", "number", "mm", minimum=0, maximum=20),
            Field("orientation", "Orientation", "choice", choices=("axial", "sagittal", "coronal", "oblique")),
            Field(
                "slice_order",
                "Slice order",
                "choice",
                choices=("ascending", "descending", "interleaved", "multiband", "other"),
            ),
            Field("tr", "Repetition time (TR)", "number", "s", minimum=0.05, maximum=30),
            Field("te", "Echo time (TE)", "number", "ms", minimum=0.1, maximum=500),
            Field("flip_angle", "Flip angle", "number", "degrees", minimum=0, maximum=180),
        ),
    ),
}


def validate_metadata(raw: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Clean metadata and a list of messages ('Acquisition: Repetition time (TR) must be a number (s)'). Unknown
    keys dropped; empty values dropped.

    Parameters
    ----------
    raw : dict or None
        ``{group: {field: value}}`` as the form sends it, groups and fields named as in :data:`GROUPS`; values may
        be strings or already typed. None or ``{}`` means no metadata.

    Returns
    -------
    clean : dict
        ``{group: {field: value}}`` with only the valid, non-empty values: ``str`` (stripped) for text, ``int``
        or ``float`` for numbers (in the field's unit), ``bool`` (from yes/no, true/false, 1/0) and the lower-case
        choice. Groups without a value are left out.
    errors : list of str
        One message per invalid value, ``"<group label>: <field label> <reason>"``, plus one when the youngest age
        is above the oldest; empty when everything is valid. Invalid values are left out of ``clean``.
    """
    clean: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for group, (group_label, fields) in GROUPS.items():
        values = (raw or {}).get(group) or {}
        out: dict[str, Any] = {}
        for f in fields:
            value = values.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                out[f.name] = _coerce(f, value)
            except ValueError as exc:
                errors.append(f"{group_label}: {f.label} {exc}")
        if out:
            clean[group] = out
    parts = clean.get("participants", {})
    if "age_min" in parts and "age_max" in parts and parts["age_min"] > parts["age_max"]:
        errors.append("Participants: the youngest age is above the oldest age")
    return clean, errors


def _coerce(f: Field, value: Any) -> Any:
    if f.kind == "text":
        text = str(value).strip()
        if len(text) > 1000:
            raise ValueError("is longer than 1000 characters")
        return text
    if f.kind == "bool":
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in ("yes", "true", "1"):
            return True
        if low in ("no", "false", "0"):
            return False
        raise ValueError("must be yes or no")
    if f.kind == "choice":
        low = str(value).strip().lower()
        if low not in f.choices:
            raise ValueError(f"must be one of {', '.join(f.choices)}")
        return low
    unit = f" ({f.unit})" if f.unit else ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number{unit}") from None
    if not math.isfinite(number):  # "nan" parses as a float, passes every range check and is not valid JSON
        raise ValueError(f"must be a number{unit}")
    if f.kind == "integer":
        if number != int(number):
            raise ValueError("must be a whole number")
        number = int(number)
    if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
        raise ValueError(f"must be between {f.minimum:g} and {f.maximum:g}{unit}")
    return number
