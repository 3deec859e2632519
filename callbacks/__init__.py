"""Dash callbacks of the curator side (accounts, contributing, processing, administration).

Imported by the pages that use them, so ``celery -A app:celery_app worker`` (which builds the Dash app and with it
every page) registers the same background callbacks as the web process.
"""
