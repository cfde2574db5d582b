"""The unit layer (a package, so that its conftest is `unit.conftest`, not a second top-level `conftest`)."""
