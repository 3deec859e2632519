"""INcDb web dashboard: layout pieces, pages and the viewer component."""
