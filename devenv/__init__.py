"""Development-only tooling: Azurite, the ARM stand-in for ACI and the Durable dev host.

Production code (function_app.py, pipeline/, scoring/) never imports this package.
"""
