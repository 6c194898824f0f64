"""The same 3-task no-op chain on Celery 5 with a Redis broker, for comparison.

Worker: celery -A bench.celery_chain worker --concurrency 2 --pool prefork
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=BROKER, backend=BROKER)
app.conf.update(
    task_acks_late=False,
    worker_prefetch_multiplier=4,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def noop(previous: object = None, step: int = 0) -> dict[str, int]:
    return {"step": step}
