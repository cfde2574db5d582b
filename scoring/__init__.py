"""The scoring worker: what runs inside the container. Loads R models from Blob Storage and scores them.

No Azure Functions imports here: this package is the scoring image's entrypoint (`python -m scoring`).
"""
