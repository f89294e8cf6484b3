"""The serving API: always the registry's Production model, hot-swapped in place.

`serving.app.create_app(store=...)` builds the FastAPI app around a `ModelStore`;
`serving.scoring` is the protocol-agnostic core (a model and validated rows in, outputs
out) that every protocol's router (`serving.protocols`) scores through.
"""
