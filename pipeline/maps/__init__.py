"""Maps on the standard grid: NIfTI checks and chunked reading, the grid, resampling, display encoding, thumbnails,
merging, and the stored map files."""
