from tests.integration.workers import workers

__all__ = ["workers"]
