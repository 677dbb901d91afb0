"""leakscan: find secrets leaked into container images, layer by layer."""

__version__ = "0.1.0"
