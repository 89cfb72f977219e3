"""Fixture modules shared across test directories."""

pytest_plugins = ["tests.support.helm"]
