"""Tests that drive a real Chromium through Playwright (see tests/support/browser.py)."""
