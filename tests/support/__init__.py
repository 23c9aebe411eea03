"""Helpers shared by the tests: builders, stand-ins and the sandbox fixture (no tests here)."""
