"""Anatomy: atlases resampled onto the grid, region names, and cluster tables."""
