"""The client routes' blueprint with everything registered on it: `app.register_functions(bp)`."""

from . import models_routes, registration, results_routes, uploads_routes  # noqa: F401 - registers them
from .blueprint import bp

__all__ = ["bp"]
