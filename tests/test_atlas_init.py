"""``pipeline init`` resamples the atlases onto the grid with progress, so the first region name a visitor asks
for on a new installation reads a cache instead of waiting for the build."""

from __future__ import annotations

from pipeline.__main__ import main
from pipeline.anatomy import atlas


def test_init_builds_every_atlas_once_and_lookups_then_read_the_cache(data_dir, capsys, monkeypatch):
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    ids = atlas.atlas_ids()
    assert all(atlas.cache_path(a).exists() for a in ids)
    assert f"atlas {len(ids)}/{len(ids)}" in out  # one progress line per atlas
    assert main(["init"]) == 0
    assert "all cached already" in capsys.readouterr().out

    atlas._memory.clear()

    def no_build(_atlas):
        raise AssertionError("a lookup resampled an atlas that init had cached")

    monkeypatch.setattr(atlas, "_resample", no_build)
    for atlas_id in ids:
        assert atlas.grid_atlas(atlas_id).index.shape == (91, 109, 91)


def test_a_damaged_cache_file_is_built_again(data_dir, monkeypatch):
    monkeypatch.setattr(atlas, "atlas_ids", lambda: ["aal", "talairach_gyrus"])
    assert atlas.build_caches() == ["aal", "talairach_gyrus"]
    atlas.cache_path("aal").write_bytes(b"not an npz")
    assert atlas.build_caches() == ["aal"]
    assert atlas.build_caches() == []
