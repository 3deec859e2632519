"""Callbacks of the pages (or shared components) of the same name under dashboard/."""
