"""The serving API: always the registry's Production model, hot-swapped in place.

`serving.app.create_app(store=...)` builds the FastAPI app around a `ModelStore`;
`serving.scoring` is the pure core (payload + model → predictions) the routes wrap.
"""
