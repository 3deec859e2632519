"""Persistence for INcDb: configuration, database models and sessions, file storage."""
