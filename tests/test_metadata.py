"""Collection metadata (DESIGN section 1): numbers validated as numbers with their units, text kept as text."""

from __future__ import annotations

import json

import pytest

from pipeline.curation.metadata import GROUPS, validate_metadata

NUMERIC = [(group, f) for group, (_, fields) in GROUPS.items() for f in fields if f.kind in ("number", "integer")]


def only_error(raw) -> str:
    _, errors = validate_metadata(raw)
    assert len(errors) == 1, errors
    return errors[0]


def test_groups_match_the_design():
    assert set(GROUPS) == {"presentation", "participants", "design", "acquisition"}
    names = {f.name for _, fields in GROUPS.values() for f in fields}
    for required in (
        "times_viewed",
        "visual_angle",
        "number",
        "age_min",
        "age_max",
        "handedness",
        "imaging_runs",
        "run_length",
        "field_strength",
        "tr",
        "te",
        "flip_angle",
        "slice_thickness",
        "orientation",
    ):
        assert required in names


def test_numbers_are_coerced():
    clean, errors = validate_metadata(
        {
            "acquisition": {"tr": "2.5", "te": " 30 ", "field_strength": 3, "flip_angle": "90.0"},
            "participants": {"number": "20", "age_min": "18", "age_max": 35.5},
            "design": {"imaging_runs": "8.0", "run_length": "15"},
            "presentation": {"times_viewed": 1},
        }
    )
    assert errors == []
    assert clean["acquisition"] == {"tr": 2.5, "te": 30.0, "field_strength": 3.0, "flip_angle": 90.0}
    assert clean["participants"] == {"number": 20, "age_min": 18.0, "age_max": 35.5}
    assert clean["design"] == {"imaging_runs": 8, "run_length": 15.0}
    assert isinstance(clean["participants"]["number"], int) and isinstance(clean["design"]["imaging_runs"], int)
    assert isinstance(clean["acquisition"]["tr"], float)
    json.dumps(clean, allow_nan=False)  # storable as strict JSON (PostgreSQL rejects NaN in JSON)


@pytest.mark.parametrize("group, field", NUMERIC, ids=[f.name for _, f in NUMERIC])
def test_non_numbers_are_rejected_with_the_unit(group, field):
    message = only_error({group: {field.name: "about three"}})
    label = GROUPS[group][0]
    assert message.startswith(f"{label}: {field.label}"), message
    assert "number" in message
    if field.unit:
        assert f"({field.unit})" in message, message


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_non_finite_numbers_are_rejected(value):
    message = only_error({"acquisition": {"tr": value}})
    assert "Repetition time (TR)" in message and "(s)" in message


@pytest.mark.parametrize("group, field", NUMERIC, ids=[f.name for _, f in NUMERIC])
def test_ranges_are_checked(group, field):
    below, above = field.minimum - 1, field.maximum + 1
    for value in (below, above):
        message = only_error({group: {field.name: value}})
        assert "between" in message and f"{field.minimum:g}" in message and f"{field.maximum:g}" in message
        if field.unit:
            assert f"({field.unit})" in message
    for value in (field.minimum, field.maximum):  # the bounds themselves are allowed
        clean, errors = validate_metadata({group: {field.name: value}})
        assert errors == [] and clean[group][field.name] == value


def test_integers_must_be_whole():
    message = only_error({"participants": {"number": "12.5"}})
    assert "Number of participants" in message and "whole number" in message
    clean, errors = validate_metadata({"participants": {"number": "12.0"}})
    assert errors == [] and clean["participants"]["number"] == 12


def test_age_min_above_max():
    message = only_error({"participants": {"age_min": "40", "age_max": "20"}})
    assert "youngest age is above the oldest" in message
    clean, errors = validate_metadata({"participants": {"age_min": "20", "age_max": "20"}})
    assert errors == [] and clean["participants"] == {"age_min": 20.0, "age_max": 20.0}


def test_choice_fields():
    clean, errors = validate_metadata({"acquisition": {"orientation": " Axial ", "slice_order": "INTERLEAVED"}})
    assert errors == []
    assert clean["acquisition"] == {"orientation": "axial", "slice_order": "interleaved"}
    message = only_error({"acquisition": {"orientation": "diagonal"}})
    assert message.startswith("Acquisition: Orientation")
    for choice in ("axial", "sagittal", "coronal", "oblique"):
        assert choice in message


@pytest.mark.parametrize(
    "value, expected",
    [
        ("yes", True),
        ("True", True),
        ("1", True),
        (True, True),
        ("no", False),
        ("false", False),
        ("0", False),
        (False, False),
    ],
)
def test_bool_fields(value, expected):
    clean, errors = validate_metadata({"presentation": {"triggered": value}})
    assert errors == [] and clean["presentation"]["triggered"] is expected


def test_bool_field_rejects_other_words():
    assert "yes or no" in only_error({"presentation": {"triggered": "sometimes"}})


def test_text_stays_text_and_unknown_or_empty_values_are_dropped():
    clean, errors = validate_metadata(
        {
            "participants": {
                "handedness": "  right-handed ",
                "native_languages": "German, English",
                "vision": "",
                "hearing": None,
                "shoe_size": "44",
            },
            "acquisition": {"scanner": "Siemens Prisma", "matrix_size": 64, "tr": "   "},
            "unknown group": {"x": "y"},
        }
    )
    assert errors == []
    assert clean == {
        "participants": {"handedness": "right-handed", "native_languages": "German, English"},
        "acquisition": {"scanner": "Siemens Prisma", "matrix_size": "64"},
    }
    assert validate_metadata({}) == ({}, [])
    assert validate_metadata(None) == ({}, [])
    assert "longer than 1000" in only_error({"participants": {"inclusion_criteria": "x" * 1001}})


def test_several_errors_are_all_reported():
    clean, errors = validate_metadata(
        {"acquisition": {"tr": "fast", "te": "-1", "scanner": "3T"}, "participants": {"number": "0"}}
    )
    assert len(errors) == 3
    assert clean == {"acquisition": {"scanner": "3T"}}
