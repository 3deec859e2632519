"""INcDb processing pipeline: NIfTI checks, resampling, decoding, merging, reference sets and ingest.

Plain functions over arrays and images; nothing here imports Dash.
"""
