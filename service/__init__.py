"""The FastAPI search service. ``create_app(settings)`` builds it; nothing heavy runs at import."""
