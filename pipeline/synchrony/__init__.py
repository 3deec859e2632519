"""Synchrony: inter-subject correlation (ISC) of components over viewers, over movie time, by annotation label,
and between components (ISFC); DESIGN section 18."""
