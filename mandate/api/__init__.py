"""The HTTP room: the FastAPI app, its routes, request and response models, and the one map from
error classes to HTTP answers. Nothing imports this room but the CLI that serves it."""
