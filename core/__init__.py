"""geoetl core: the orchestrator, its models, contracts and errors."""

__version__ = "0.1.0"
