"""Reporters: terminal, JSON lines, JUnit XML, a self-contained HTML page."""
