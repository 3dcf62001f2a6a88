"""Suite-wide settings. Import smolgate first so its OpenMP policy is set before torch initialises."""

import smolgate  # noqa: F401
