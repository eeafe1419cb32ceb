"""Example balloonsim plugins, registered by entry points in this package's pyproject.toml."""
