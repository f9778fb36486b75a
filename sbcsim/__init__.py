"""sbcsim: a Microsoft Teams Direct Routing certification lab in a box."""

__version__ = "0.1.0"
__all__ = ["__version__"]
