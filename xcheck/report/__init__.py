"""Reporters: terminal, JSON lines, JUnit XML."""
