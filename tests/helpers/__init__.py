"""Test-only helpers (importable as `helpers` from tests/ and bench/): sample training data, model switches."""
