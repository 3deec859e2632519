"""Reusable layout functions of the pages (browse and curator).

Pages under ``dashboard/pages`` only compose these. Modules that own callbacks (tables, search, charts, tabs)
register them once at import with pattern-matching ids, so a page can create any number of them per request.
"""
