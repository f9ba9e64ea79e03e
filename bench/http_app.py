"""The offload app served by the HTTP scenarios (``bench.http``): one no-op job type.

``offload serve --app bench.http_app:app`` and ``offload worker --app bench.http_app:app`` both
load it; the database comes from ``OFFLOAD_DATABASE_URL`` and the queue name from
``BENCH_HTTP_QUEUE`` (both set by the runner).
"""

# No `from __future__ import annotations`: offload reads the handler's input model from its
# annotations at registration time.

import os

from offload import Context, Offload
from pydantic import BaseModel

JOB_TYPE = "bench.noop"


class NoopInput(BaseModel):
    n: int = 0


app = Offload()


@app.job(JOB_TYPE, queue=os.environ.get("BENCH_HTTP_QUEUE", "bench_http"))
async def noop(ctx: Context, inp: NoopInput) -> None:
    return None
