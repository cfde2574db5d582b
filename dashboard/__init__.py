"""The run dashboard served by the Functions app: page, static files and JSON routes (routes.py)."""
