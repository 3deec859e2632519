"""Curation: upload checks, archives, resumable uploads, ingest, the catalogue of movies, collections and uploads,
metadata, and the demo data."""
