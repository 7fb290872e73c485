"""deploy-chaos: rehearse deployments of stateful apps under failure."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
