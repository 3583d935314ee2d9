"""Shared test setup: the real control-plane fixtures live in the e2e harness."""

pytest_plugins = ["e2e.harness.pytest_plugin"]
