"""The profile API: serving tables, keys and roles, the FastAPI app and its /ui page (docs/api.md)."""
