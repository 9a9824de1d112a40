"""The queue port: what the services need of the job queue, as one object per app.

`create_app` builds it (`init_app`) into `app.extensions["wpotp.queue"]`; services reach it with
`wpotp.extensions.job_queue()` and never import RQ or `jobs.enqueue` themselves
(otp/service.py, otp/delivery.py, otp/maintenance.py, otp/receipts.py, messages.py). This is the one adapter,
backed by RQ and Redis (jobs/enqueue.py says how sends are queued, claimed and rescued); tests
run it against real Redis and a real worker like everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask
from redis.client import Pipeline

from . import enqueue, may_linger, receipt_queue, stop_event

EXTENSION = "wpotp.queue"


class RQJobQueue:
    """The job queue on RQ and Redis. Every method works in the caller's app context."""

    # The batch path's constants, for the drain job (otp/delivery.py drain_sends).
    DRAIN_FOR = enqueue.DRAIN_FOR
    DRAIN_SIZE_WHEN_OFF = enqueue.DRAIN_SIZE_WHEN_OFF
    RECEIPT_DRAIN_FOR = receipt_queue.RECEIPT_DRAIN_FOR  # seconds a receipt drain job claims before handing on

    # --- the web tier's hand-off and the sweep's ------------------------------------------------

    def hand_off_send(self, otp_id: str, generation: int, ttl: int, pipeline: Pipeline) -> None:
        """Queue a ready send inside the caller's MULTI pipeline (with its sealed code): nothing
        reaches Redis until the caller executes it; then pass the replies to after_hand_off."""
        enqueue.enqueue_send(otp_id, generation, ttl=ttl, pipeline=pipeline)

    def after_hand_off(self, replies: list) -> str | None:
        """After the hand-off pipeline ran: a drain job if this send was the one to need it."""
        return enqueue.drain_if_flagged(replies)

    def queue_send(self, otp_id: str, generation: int, ttl: int, try_number: int = 1) -> str:
        """Queue a ready send on its own (the sweep's re-queue): one round trip, plus a drain job if needed."""
        return enqueue.enqueue_send(otp_id, generation, try_number, ttl=ttl)

    def schedule_retry(self, otp_id: str, generation: int, try_number: int, delay: int, ttl: int) -> str:
        """Try the send again in `delay` seconds (0: as soon as a worker is free)."""
        return enqueue.enqueue_send(otp_id, generation, try_number, delay=delay, ttl=ttl)

    def schedule_fallback(self, otp_id: str, generation: int, delay: int, pipeline: Pipeline | None = None) -> str:
        """The no-receipt timer of a channel `auto` send: its SMS fallback job in `delay` seconds
        (with `pipeline`, inside the caller's MULTI)."""
        return enqueue.enqueue_fallback(otp_id, generation, None, delay=delay, pipeline=pipeline)

    def queue_fallback(self, otp_id: str, generation: int, reason: str) -> str:
        """The SMS fallback of a channel `auto` OTP now (a receipt said "not on WhatsApp")."""
        return enqueue.enqueue_fallback(otp_id, generation, reason)

    def send_pending(self, otp_id: str, started_grace: float) -> bool:
        """Will this OTP's latest queued send still run, or is it running? (The sweep's test.)"""
        return enqueue.job_alive(enqueue.current_send_job(otp_id), started_grace)

    def ensure_drain(self) -> str | None:
        """Batched sends waiting and no drain job pending: enqueue one."""
        return enqueue.ensure_drain()

    def queue_message(self, message_id: str, try_number: int = 1, delay: int = 0) -> str:
        """Queue (or, with a delay, schedule) the send of a template message."""
        return enqueue.enqueue_message(message_id, try_number, delay)

    # --- the drain job's side (the batch path) -------------------------------------------------

    def claim_sends(self, job_id: str, count: int, first: bool, woken: bytes | None = None,
                    release: bool = False) -> list[tuple[bytes, tuple[str, int, int, int]]]:
        """Up to `count` waiting sends, claimed for this drain job: (raw item, parsed item) each
        (`woken`: the one a lingering wait took, first; `release`: forget the previous batch's
        claims first, as release_claimed would)."""
        return [(raw, enqueue.parse_item(raw)) for raw in enqueue.claim_sends(job_id, count, first, woken, release)]

    def release_claimed(self, job_id: str) -> None:
        enqueue.release_claimed(job_id)

    def give_back_unstarted(self, job_id: str, raw_items: list[bytes]) -> int:
        return enqueue.give_back_unstarted(job_id, raw_items)

    def linger(self, job_id: str, milliseconds: int, stopping: Callable[[], bool] | None) -> bytes | bool:
        """Nothing left to claim: wait up to `milliseconds` for more sends, as a lingering drain job
        (the hand-off enqueues no new one meanwhile). The send the wait took (pass it to the next
        claim as `woken`), True (sends wait: claim), or False (end the job). Never waits outside
        one of our workers or in a burst."""
        return may_linger() and enqueue.linger_for_sends(job_id, milliseconds, stopping)

    def let_go(self, job_id: str) -> None:
        """The drain job ends: it no longer lingers (if it did)."""
        enqueue.let_go_of_sends(job_id)

    def hand_on(self) -> str:
        """A drain job that ran its time: a fresh one takes over."""
        return enqueue.enqueue_drain()

    def hand_on_stopping(self) -> str | None:
        return enqueue.hand_on_stopping()

    # --- the receipt queue (RECEIPT_BATCH; otp/receipts.py applies what it holds) ---------------

    def hand_off_receipts(self, items: list[str]) -> str | None:
        """Queue dumped receipts for a drain job (one MULTI); a Redis error propagates."""
        return receipt_queue.hand_off_receipts(items)

    def claim_receipts(self, job_id: str, count: int, first: bool, woken: bytes | None = None) -> list[bytes]:
        return receipt_queue.claim_receipts(job_id, count, first, woken)

    def release_receipts(self, job_id: str) -> None:
        receipt_queue.release_receipts(job_id)

    def give_back_receipts(self, job_id: str) -> int:
        return receipt_queue.give_back_receipts(job_id)

    def ensure_receipt_drain(self) -> str | None:
        return receipt_queue.ensure_receipt_drain()

    def linger_for_receipts(self, job_id: str, milliseconds: int, stopping: Callable[[], bool] | None) \
            -> bytes | bool:
        """As linger, for a receipt drain job."""
        return may_linger() and receipt_queue.linger_for_receipts(job_id, milliseconds, stopping)

    def let_go_of_receipts(self, job_id: str) -> None:
        receipt_queue.let_go_of_receipts(job_id)

    def hand_on_receipts(self) -> str:
        """A receipt drain job that ran its time: a fresh one takes over."""
        return receipt_queue.enqueue_receipt_drain()

    def rescue_receipts(self) -> int:
        """The sweep's part: claims of dead drain jobs back to the queue; how many receipts."""
        return receipt_queue.rescue_receipts()

    def stopping(self) -> Callable[[], bool] | None:
        """The running job's view of its worker's stop request, safe to call from the job's own
        threads (None outside one of our workers)."""
        event: threading.Event | None = stop_event()
        return event.is_set if event is not None else None


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = RQJobQueue()
