from tests.integration.private_postgres import private_postgres
from tests.integration.private_rabbitmq import private_rabbitmq
from tests.integration.workers import workers

__all__ = ["private_postgres", "private_rabbitmq", "workers"]
