"""Example jobs shipped with offload; ``offload demo`` runs them.

- ``reports.reconcile``: a monthly reconciliation report over generated transactions that does
  real work for tens of seconds, with progress and a checkpoint per month.
- ``partners.sync``: a call to a flaky dependency that fails transiently and succeeds on retry.
- ``imports.parse``: a poison job that can never succeed; it is dead-lettered at once.

Run a worker for them with ``offload worker --app offload.examples:app``.
"""

from __future__ import annotations

import hashlib
import random
import time

from pydantic import BaseModel, Field

from .. import Context, Offload, PermanentError

app = Offload()


class ReconcileRequest(BaseModel):
    year: int = Field(ge=2000, le=2100)
    account: str = "ACME-001"
    transactions_per_month: int = Field(default=250_000, ge=1, le=2_000_000)


@app.job("reports.reconcile", queue="reports", max_attempts=5, timeout=900)
def reconcile(ctx: Context, req: ReconcileRequest) -> dict:
    """Match a ledger against the bank statement month by month.

    A sync handler (it is CPU-bound), so it runs in a worker thread. Each finished month is
    saved as a checkpoint: a worker that dies in month 9 is followed by one that starts at 9.
    """
    state = ctx.checkpoint or {"month": 1, "totals": {}, "mismatches": 0}
    while state["month"] <= 12:
        month = state["month"]
        ledger, bank = _generate_month(req, month)
        matched, mismatched, total = _match(ledger, bank)
        state["totals"][f"{req.year}-{month:02d}"] = round(total, 2)
        state["mismatches"] += mismatched
        state["month"] = month + 1
        ctx.save_checkpoint(state)
        ctx.progress(month / 12 * 100, f"reconciled {req.year}-{month:02d}: {matched} matched")
        ctx.raise_if_cancel_requested()
    return {
        "account": req.account,
        "year": req.year,
        "total": round(sum(state["totals"].values()), 2),
        "mismatches": state["mismatches"],
        "by_month": state["totals"],
    }


def _generate_month(req: ReconcileRequest, month: int) -> tuple[list[tuple], list[tuple]]:
    """Deterministic transactions; about one in 500 bank lines disagrees with the ledger."""
    rng = random.Random(f"{req.account}:{req.year}:{month}")
    ledger, bank = [], []
    for i in range(req.transactions_per_month):
        amount = round(rng.uniform(-5_000, 5_000), 2)
        ref = hashlib.sha1(f"{req.account}:{req.year}:{month}:{i}".encode()).hexdigest()[:16]
        ledger.append((ref, amount))
        bank.append((ref, amount if rng.random() > 0.002 else round(amount + 0.01, 2)))
    rng.shuffle(bank)
    return ledger, bank


def _match(ledger: list[tuple], bank: list[tuple]) -> tuple[int, int, float]:
    by_ref = dict(bank)
    matched = mismatched = 0
    total = 0.0
    for ref, amount in sorted(ledger):
        if by_ref.get(ref) == amount:
            matched += 1
        else:
            mismatched += 1
        total += amount
    return matched, mismatched, total


class SyncRequest(BaseModel):
    partner: str
    failures_before_success: int = Field(default=2, ge=0, le=10)


@app.job("partners.sync", max_attempts=5, backoff_base=0.5, backoff_max=5)
async def sync_partner(ctx: Context, req: SyncRequest) -> dict:
    """Calls a partner API that is down for the first few attempts (a transient failure)."""
    await ctx.progress(10, f"calling {req.partner} (attempt {ctx.attempt})")
    if ctx.attempt <= req.failures_before_success:
        raise ConnectionError(f"{req.partner} answered 503 Service Unavailable")
    await ctx.progress(100, "synced")
    return {"partner": req.partner, "synced_at": time.time(), "attempts": ctx.attempt}


class ImportRequest(BaseModel):
    file: str


@app.job("imports.parse", max_attempts=3)
async def parse_import(ctx: Context, req: ImportRequest) -> dict:
    """A poison job: the file is corrupt, retrying cannot help, so it fails permanently."""
    raise PermanentError(f"{req.file}: line 1: not a CSV file (found a PNG header)")
