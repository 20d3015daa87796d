"""Every test here runs pods on a real node (tests/node/fixtures.py)."""
