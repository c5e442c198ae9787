"""Live mode: cross-check AT on a running Linux kernel's own translation tables."""
