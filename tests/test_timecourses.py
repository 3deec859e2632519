"""Time courses of 4D maps, the collection's movie timing and movie annotations (pipeline.temporal.timecourses)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.temporal.events import MAX_EVENTS, Event, events_by_label, read_events
from pipeline.temporal.timecourses import (
    check_timecourses,
    is_timecourse_name,
    match_timecourse_files,
    read_ftmix,
    read_melodic_mix,
    read_timecourse_table,
    unmatched_timecourse_files,
)
from pipeline.temporal.timing import Run, TimeCourseError, Timing, format_movie_time


def refused(call, *args, patterns=(), starts=None):
    """Call and expect a TimeCourseError whose message holds every pattern (and starts with ``starts``)."""
    with pytest.raises(TimeCourseError) as info:
        call(*args)
    message = str(info.value)
    if starts is not None:
        assert message.startswith(starts), message
    for pattern in patterns:
        assert pattern in message, message
    return message


# --- timing: movie time of each row ---------------------------------------------------------------------------


def test_movie_times_with_a_gap_between_runs():
    timing = Timing.parse("2", "0:3,100:2")
    np.testing.assert_array_equal(timing.movie_times(), [0.0, 2.0, 4.0, 100.0, 102.0])
    np.testing.assert_array_equal(timing.run_index(), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(timing.subject_index(), [0, 0, 0, 0, 0])
    assert timing.movie_times().dtype == np.float64
    assert timing.rows_per_subject == timing.rows == 5
    assert timing.run_lengths == (3, 2)
    assert timing.duration_s == pytest.approx(104.0)  # 0 to the end of the last volume, gap included


def test_movie_times_with_overlapping_runs_like_studyforrest():
    # Run 2 starts at 5 s while run 1 (0-8 s at TR 2) is still going: its frames repeat movie time.
    timing = Timing.parse(2.0, "0:4, 5:3")
    np.testing.assert_allclose(timing.movie_times(), [0, 2, 4, 6, 5, 7, 9])
    np.testing.assert_array_equal(timing.run_index(), [0, 0, 0, 0, 1, 1, 1])
    assert timing.duration_s == pytest.approx(11.0)  # overlap counted once
    assert "run 2 starts 3 s before run 1 ends" in timing.describe()


def test_movie_times_for_two_concatenated_subjects():
    timing = Timing.parse(1.5, [[10, 2], [20.5, 1]], subjects=2)
    assert timing.rows_per_subject == 3 and timing.rows == 6
    np.testing.assert_allclose(timing.movie_times(), [10, 11.5, 20.5, 10, 11.5, 20.5])
    np.testing.assert_array_equal(timing.run_index(), [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(timing.subject_index(), [0, 0, 0, 1, 1, 1])
    assert timing.movie_times().shape == timing.run_index().shape == timing.subject_index().shape == (6,)


def test_decimal_starts_and_tr_and_run_objects_are_accepted():
    timing = Timing.parse("0.8", "12.5:10;30:4\n", "3")
    assert timing == Timing(0.8, (Run(12.5, 10), Run(30, 4)), 3)
    assert Timing.parse(2, [Run(0, 5)]).runs == (Run(0.0, 5),)
    assert Timing.parse(2, "0:5,").run_lengths == (5,)  # a trailing comma is not an empty run


@pytest.mark.parametrize(
    ("tr", "runs", "subjects", "patterns"),
    [
        ("abc", "0:10", 1, ["The TR must be a number of seconds", '"abc"']),
        (0, "0:10", 1, ["The TR", "greater than 0", "not 0"]),
        (61, "0:10", 1, ["The TR", "at most 60"]),
        ("nan", "0:10", 1, ["The TR"]),
        (2, "0:10,abc:10", 1, ['Run 2 ("abc:10"): the movie time must be a number of seconds.']),
        (2, "0:10,-5:10", 1, ['Run 2 ("-5:10")', ">= 0", "not -5"]),
        (2, "0:0", 1, ['Run 1 ("0:0")', "number of volumes", ">= 1", "not 0"]),
        (2, "0:ten", 1, ['Run 1 ("0:ten")', "number of volumes must be a whole number"]),
        (2, "0:10.5", 1, ['Run 1 ("0:10.5")', "whole number"]),
        (2, "0:10,451", 1, ['Run 2 ("451")', "START:N"]),
        (2, "0:15:00:450", 1, ['Run 1 ("0:15:00:450")', "in seconds", "h:mm:ss"]),
        (2, "", 1, ["at least one run"]),
        (2, [], 1, ["at least one run"]),
        (2, [[0, 10], ["x", 3]], 1, ['Run 2 ("x:3"): the movie time must be a number of seconds.']),
        (2, [[0, 10, 3]], 1, ["Run 1", "pair"]),
        (2, "0:10", 0, ["number of subjects", "1 to 1000", "not 0"]),
        (2, "0:10", 1001, ["number of subjects", "not 1001"]),
        (2, "0:10", "two", ["number of subjects", '"two"']),
        (0.5, "0:5000000,0:5000001", 1, ["10,000,001 rows", "more than the 10,000,000"]),
    ],
)
def test_timing_parse_refusals(tr, runs, subjects, patterns):
    refused(Timing.parse, tr, runs, subjects, patterns=patterns)


def test_runs_may_not_be_negative_when_built_directly():
    refused(Run, -1.0, 5, patterns=[">= 0"])
    refused(Run, 0.0, 0, patterns=[">= 1"])
    refused(Timing, 2.0, (), 1, patterns=["at least one run"])


def test_to_dict_from_dict_round_trip_through_json():
    timing = Timing.parse("2", "0:451,886:441,1756:438", 2)
    stored = json.loads(json.dumps(timing.to_dict()))
    assert stored == {"tr": 2.0, "runs": [[0.0, 451], [886.0, 441], [1756.0, 438]], "subjects": 2}
    assert Timing.from_dict(stored) == timing
    assert Timing.from_dict({"tr": 2, "runs": [[0, 3]]}).subjects == 1  # older rows without subjects
    refused(Timing.from_dict, {"runs": [[0, 3]]}, patterns=["lacks tr"])
    refused(Timing.from_dict, {"tr": 2, "runs": [[0, -3]]}, patterns=["Run 1", ">= 1"])
    refused(Timing.from_dict, [2, [[0, 3]]], patterns=["JSON object"])


def test_describe_and_movie_time_format():
    assert Timing.parse(2, "0:150,300:150,600:150", 2).describe() == (
        "3 runs, 450 volumes per subject x 2 subjects = 900 rows; movie time 0:00:00-0:15:00 (TR 2 s)"
    )
    assert Timing.parse(0.8, "60:10").describe() == "1 run, 10 volumes; movie time 0:01:00-0:01:08 (TR 0.8 s)"
    assert "10 s gap before run 2" in Timing.parse(2, "0:5,20:5").describe()
    assert format_movie_time(0) == "0:00:00"
    assert format_movie_time(3723.4) == "1:02:03"
    assert format_movie_time(7199.6) == "2:00:00"


# --- reading time-course files --------------------------------------------------------------------------------


def melodic_format(path, values):
    # MELODIC writes "%.7e"-like numbers separated by two spaces, with trailing spaces and no header.
    np.savetxt(path, values, fmt="%.7e", delimiter="  ", newline="  \n")
    return path


def test_read_melodic_mix_in_melodics_format(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, (30, 4)) * np.array([1e-3, 1.0, 10.0, 1e5])
    path = melodic_format(tmp_path / "melodic_mix", values)
    assert "e-0" in path.read_text() and "  " in path.read_text()
    mix = read_melodic_mix(path, "group.ica/melodic_mix")
    assert mix.dtype == np.float32 and mix.shape == (30, 4)
    np.testing.assert_allclose(mix, values, rtol=1e-6)


def test_read_melodic_mix_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "melodic_mix"
    path.write_bytes(b"1.0  2.0\r\n3.0  4.0\r\n\r\n")
    np.testing.assert_array_equal(read_melodic_mix(path, "melodic_mix"), [[1, 2], [3, 4]])


def test_read_ftmix(tmp_path):
    values = np.abs(np.random.default_rng(2).normal(0, 1, (15, 3)))
    ftmix = read_ftmix(melodic_format(tmp_path / "melodic_FTmix", values), "melodic_FTmix")
    assert ftmix.dtype == np.float32 and ftmix.shape == (15, 3)
    np.testing.assert_allclose(ftmix, values, rtol=1e-6)


def test_non_numeric_melodic_mix_names_line_and_column(tmp_path):
    path = tmp_path / "melodic_mix"
    path.write_text("1.0  2.0\n3.0  4.0\n5.0  oops\n")
    refused(
        read_melodic_mix,
        path,
        "group.ica/melodic_mix",
        starts="group.ica/melodic_mix, line 3, column 2",
        patterns=["'oops' is not a number"],
    )
    path.write_text("IC1  IC2\n1  2\n")  # a header MELODIC never writes
    refused(read_melodic_mix, path, "melodic_mix", patterns=["line 1, column 1", "'IC1'", "no header"])


def test_ragged_melodic_mix(tmp_path):
    path = tmp_path / "melodic_mix"
    path.write_text("1  2  3\n4  5  6\n7  8\n")
    refused(read_melodic_mix, path, "melodic_mix", starts="melodic_mix, line 3", patterns=["2 values", "line 1 has 3"])


def test_nan_and_overflow_in_melodic_mix(tmp_path):
    path = tmp_path / "melodic_mix"
    path.write_text("1  2\n\n3  nan\n")  # the blank line counts for the line number
    refused(
        read_melodic_mix, path, "melodic_mix", starts="melodic_mix, line 3, column 2", patterns=["not a finite number"]
    )
    path.write_text("1  2\n3  1e39\n")  # finite as float64, inf as float32
    refused(read_melodic_mix, path, "melodic_mix", starts="melodic_mix, line 2, column 2")


def test_empty_missing_gzipped_and_huge_files(tmp_path, monkeypatch):
    path = tmp_path / "melodic_mix"
    path.write_text("  \n\n")
    refused(read_melodic_mix, path, "melodic_mix", starts="melodic_mix: the file is empty")
    refused(read_melodic_mix, tmp_path / "nothing", "melodic_mix", patterns=["not found"])
    path.write_bytes(b"\x1f\x8b\x08\x00rest")
    refused(read_ftmix, path, "melodic_FTmix", patterns=["gzip-compressed"])
    path.write_text("1  2\n" * 100)
    monkeypatch.setattr("pipeline.temporal.timecourses.MAX_TEXT_BYTES", 100)
    refused(read_melodic_mix, path, "melodic_mix", patterns=["500 bytes", "more than the 100 bytes"])


def test_read_timecourse_table(tmp_path):
    path = tmp_path / "zmap_timecourses.tsv"
    path.write_text("vol1\tvol2\tvol3\n0.5\t-1\t2e-3\n1\t2\t3\n\n")
    table = read_timecourse_table(path, "zmap_timecourses.tsv")
    assert table.dtype == np.float32
    np.testing.assert_allclose(table, [[0.5, -1, 2e-3], [1, 2, 3]])


def test_timecourse_table_refusals(tmp_path):
    path = tmp_path / "zmap_timecourses.tsv"
    path.write_text("vol1\tvol2\n1\t2\n3\tn/a\n")
    refused(
        read_timecourse_table,
        path,
        "zmap_timecourses.tsv",
        starts="zmap_timecourses.tsv, line 3, column 2 (vol2)",
        patterns=["'n/a' is not a number"],
    )
    path.write_text("vol1\tvol2\n1\t2\t3\n")
    refused(
        read_timecourse_table,
        path,
        "zmap_timecourses.tsv",
        starts="zmap_timecourses.tsv, line 2",
        patterns=["3 values", "the header (line 1) names 2"],
    )
    path.write_text("vol1,vol2\n1,2\n")
    refused(read_timecourse_table, path, "zmap_timecourses.tsv", patterns=["comma-separated"])
    path.write_text("1\t2\n3\t4\n")
    refused(read_timecourse_table, path, "zmap_timecourses.tsv", patterns=["line 1", "not a header"])
    path.write_text("vol1\tvol2\n")
    refused(read_timecourse_table, path, "zmap_timecourses.tsv", patterns=["empty", "no rows below the header"])


# --- checking time courses against the map and the timing -----------------------------------------------------


def test_columns_must_match_the_maps_volumes():
    values = np.zeros((900, 12), np.float32)
    message = refused(
        check_timecourses,
        values,
        20,
        None,
        "melodic_mix",
        "melodic_IC.nii.gz",
        starts="melodic_mix has 12 columns but melodic_IC.nii.gz has 20 volumes (one column per component).",
    )
    assert "transposed" not in message
    refused(
        check_timecourses,
        np.zeros((20, 900)),
        20,
        None,
        "melodic_mix",
        "melodic_IC.nii.gz",
        patterns=["900 columns", "20 volumes", "transposed"],
    )
    refused(
        check_timecourses,
        np.zeros((5, 3)),
        4,
        None,
        "zmap_timecourses.tsv",
        "zmap.nii.gz",
        patterns=["3 columns", "zmap.nii.gz has 4 volumes", "one column per volume"],
    )


def test_rows_must_match_the_timing():
    timing = Timing.parse(2, "0:150,300:150,600:150", 2)
    check_timecourses(np.zeros((900, 20), np.float32), 20, timing, "melodic_mix", "melodic_IC.nii.gz")
    check_timecourses(np.zeros((900, 20), np.float32), 20, None, "melodic_mix", "melodic_IC.nii.gz")
    refused(
        check_timecourses,
        np.zeros((450, 20)),
        20,
        timing,
        "melodic_mix",
        "melodic_IC.nii.gz",
        starts="melodic_mix has 450 rows but the collection's timing gives 450 volumes per subject x 2 subjects "
        "= 900 rows",
        patterns=["matches 1 subject of 450 volumes", "number of subjects to 1"],
    )
    refused(
        check_timecourses,
        np.zeros((1350, 20)),
        20,
        timing,
        "melodic_mix",
        "melodic_IC.nii.gz",
        patterns=["1,350 rows", "= 900 rows", "matches 3 subjects", "number of subjects to 3"],
    )
    refused(
        check_timecourses,
        np.zeros((880, 20)),
        20,
        timing,
        "melodic_mix",
        "melodic_IC.nii.gz",
        patterns=["880 rows", "= 900 rows", "440 rows per subject", "number of volumes"],
    )
    single = Timing.parse(2, "0:10")
    refused(
        check_timecourses,
        np.zeros((7, 3)),
        3,
        single,
        "zmap_timecourses.tsv",
        "zmap.nii.gz",
        patterns=["7 rows", "gives 10 volumes"],
    )
    # melodic_FTmix rows are frequencies: never checked against the timing, but its columns are
    check_timecourses(np.zeros((225, 20)), 20, timing, "group.ica/melodic_FTmix", "melodic_IC.nii.gz")
    refused(
        check_timecourses,
        np.zeros((225, 19)),
        20,
        timing,
        "melodic_FTmix",
        "melodic_IC.nii.gz",
        patterns=["19 columns", "20 volumes"],
    )


# --- which files belong to which map --------------------------------------------------------------------------


def test_timecourse_names():
    for name in (
        "melodic_mix",
        "melodic_FTmix",
        "melodic_mix.txt",
        "a/b.ica/melodic_FTmix.txt",
        "zmap_timecourses.tsv",
        "dir\\zmap_TIMECOURSES.TSV",
    ):
        assert is_timecourse_name(name), name
    for name in (
        "melodic_IC.nii.gz",
        "MELODIC_MIX",
        "melodic_mix.tsv",
        "_timecourses.tsv",
        "timecourses.tsv",
        "melodic_Tmodes",
        "report.html",
    ):
        assert not is_timecourse_name(name), name


def test_match_in_a_nested_ica_folder_of_an_archive():
    names = [
        "upload.zip/sub/group.ica/melodic_IC.nii.gz",
        "upload.zip/sub/group.ica/melodic_mix",
        "upload.zip/sub/group.ica/melodic_FTmix",
        "upload.zip/sub/group.ica/report/00index.html",
        "upload.zip/sub/other.ica/melodic_IC.nii.gz",
        "upload.zip/sub/melodic_mix",
        "upload.zip/__MACOSX/sub/group.ica/melodic_mix",
    ]
    assert match_timecourse_files(names) == {
        "upload.zip/sub/group.ica/melodic_IC.nii.gz": {
            "mix": "upload.zip/sub/group.ica/melodic_mix",
            "ftmix": "upload.zip/sub/group.ica/melodic_FTmix",
        }
    }
    # melodic_mix one folder up belongs to no map (other.ica has none of its own); __MACOSX is ignored
    assert unmatched_timecourse_files(names) == ["upload.zip/sub/melodic_mix"]


def test_match_separately_uploaded_files():
    names = ["melodic_FTmix.txt", "melodic_IC.nii", "melodic_mix.txt", "zmap.nii.gz"]
    assert match_timecourse_files(names) == {"melodic_IC.nii": {"mix": "melodic_mix.txt", "ftmix": "melodic_FTmix.txt"}}
    assert unmatched_timecourse_files(names) == []
    assert match_timecourse_files(["melodic_mix"]) == {}
    assert unmatched_timecourse_files(["melodic_mix", "melodic_FTmix"]) == ["melodic_mix", "melodic_FTmix"]


def test_match_named_timecourse_tables():
    names = [
        "maps/zmap.nii.gz",
        "maps/zmap_timecourses.tsv",
        "maps/tmap.nii",
        "maps/tmap_timecourses.tsv",
        "zmap_timecourses.tsv",
        "maps/beta_timecourses.tsv",
    ]
    assert match_timecourse_files(names) == {
        "maps/zmap.nii.gz": {"mix": "maps/zmap_timecourses.tsv"},
        "maps/tmap.nii": {"mix": "maps/tmap_timecourses.tsv"},
    }
    # a table in another folder, or with no map of its name, is listed
    assert unmatched_timecourse_files(names) == ["zmap_timecourses.tsv", "maps/beta_timecourses.tsv"]


def test_second_file_for_the_same_map_is_unmatched():
    names = ["a.ica/melodic_IC.nii.gz", "a.ica/melodic_mix", "a.ica/melodic_mix.txt"]
    assert match_timecourse_files(names) == {"a.ica/melodic_IC.nii.gz": {"mix": "a.ica/melodic_mix"}}
    assert unmatched_timecourse_files(names) == ["a.ica/melodic_mix.txt"]


# --- events ---------------------------------------------------------------------------------------------------


def test_events_with_trial_type_and_amplitude():
    text = "onset\tduration\ttrial_type\tamplitude\n0\t2.5\tspeech\t0.5\n10\t0\tcut\t1\n12.25\t3\tspeech\t-2\n"
    events = read_events(text.encode(), "speech.tsv")
    assert events == [Event(0.0, 2.5, "speech", 0.5), Event(10.0, 0.0, "cut", 1.0), Event(12.25, 3.0, "speech", -2.0)]
    grouped = events_by_label(events)
    assert list(grouped) == ["speech", "cut"]
    onsets, durations, amplitudes = grouped["speech"]
    np.testing.assert_array_equal(onsets, [0.0, 12.25])
    np.testing.assert_array_equal(durations, [2.5, 3.0])
    np.testing.assert_array_equal(amplitudes, [0.5, -2.0])
    assert onsets.dtype == durations.dtype == amplitudes.dtype == np.float64


def test_events_with_label_and_value_columns_and_na_amplitude():
    text = "label\tonset\tvalue\tduration\tnotes\nface\t1\tn/a\t2\tfirst\nface\t5\t3\t1\t\nhouse\t9\t\t1\tx\n"
    events = read_events(text, "faces.tsv")
    assert events == [Event(1.0, 2.0, "face", 1.0), Event(5.0, 1.0, "face", 3.0), Event(9.0, 1.0, "house", 1.0)]
    assert read_events("onset\tduration\ttrial_type\n4\t1\tmusic\n", "m.tsv") == [Event(4.0, 1.0, "music")]


def test_events_refusals_name_the_file_and_the_line():
    header = "onset\tduration\ttrial_type\n"
    rows = "".join(f"{i}\t1\tspeech\n" for i in range(5))
    refused(
        read_events,
        header + rows + "6\t-2\tspeech\n",
        "speech.tsv",
        starts="speech.tsv, line 7: the duration must be a number of seconds >= 0, not '-2'.",
    )
    refused(read_events, header + "-1\t1\tspeech\n", "speech.tsv", starts="speech.tsv, line 2: the onset")
    refused(read_events, header + "n/a\t1\tspeech\n", "speech.tsv", patterns=["line 2", "onset", "'n/a'"])
    refused(read_events, header + "1\tlong\tspeech\n", "speech.tsv", patterns=["line 2", "duration", "'long'"])
    refused(read_events, header + "1\t1\tn/a\n", "speech.tsv", patterns=["line 2", "trial_type is missing"])
    refused(read_events, header + "1\t1\t" + "x" * 201 + "\n", "speech.tsv", patterns=["line 2", "201 characters"])
    refused(read_events, header + "1\t1\tbad\x07label\n", "speech.tsv", patterns=["line 2", "control characters"])
    refused(
        read_events,
        "onset\tduration\ttrial_type\tamplitude\n1\t1\ts\tloud\n",
        "speech.tsv",
        patterns=["line 2", "amplitude must be a number", "'loud'"],
    )
    refused(read_events, header + "1\t1\n", "speech.tsv", patterns=["line 2", "2 tab-separated fields", "has 3"])


def test_events_missing_column_and_empty_file():
    refused(
        read_events,
        "duration\ttrial_type\n1\tspeech\n",
        "speech.tsv",
        starts="speech.tsv, line 1: no onset column",
        patterns=["duration, trial_type"],
    )
    refused(read_events, "onset,duration,trial_type\n1,1,speech\n", "speech.csv", patterns=["comma-separated"])
    refused(read_events, b"", "speech.tsv", starts="speech.tsv: the file is empty")
    refused(read_events, "\ufeff\r\n", "speech.tsv", starts="speech.tsv: the file is empty")
    refused(read_events, "onset\tduration\ttrial_type\n\n", "speech.tsv", patterns=["no events"])
    refused(read_events, b"onset\tduration\ttrial_type\n1\t1\t\xff\n", "speech.tsv", patterns=["line 2", "UTF-8"])


def test_events_with_bom_and_crlf():
    data = "\ufeffonset\tduration\ttrial_type\r\n0\t1\tspeech\r\n2\t1\tmusic\r\n\r\n".encode()
    assert read_events(data, "speech.tsv") == [Event(0.0, 1.0, "speech"), Event(2.0, 1.0, "music")]


def test_too_many_events(monkeypatch):
    monkeypatch.setattr("pipeline.temporal.events.MAX_EVENTS", 3)
    text = "onset\tduration\ttrial_type\n" + "1\t1\ts\n" * 4
    refused(read_events, text, "speech.tsv", patterns=["line 5", "more than 3 events"])
    assert MAX_EVENTS == 200_000
