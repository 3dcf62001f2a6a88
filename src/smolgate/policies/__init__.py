"""Request policies on the dispatcher's path: the vision bridge (and privacy, caching)."""
