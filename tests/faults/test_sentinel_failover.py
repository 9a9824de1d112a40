"""Two hosts on Redis Sentinel and one PostgreSQL, the Redis master failed over mid-run (issue 17, item 5).

Each "host" is a gunicorn web instance and a `wpotp worker` process, with an instance folder of
its own; both share the secrets, the database and REDIS_URL=redis+sentinel://... (a master, a
replica and a sentinel started here). OTPs are sent through host A while host B verifies the
codes that reached the provider (a Meta Graph double on 127.0.0.1); halfway, SENTINEL FAILOVER
promotes the replica. Every OTP answered 201 must reach the provider exactly once and verify
through the other host; a send refused meanwhile is a 503 that leaves nothing behind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests
from redis.sentinel import SentinelConnectionPool
from sqlalchemy import select

from tests.helpers import make_key, work_queues
from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
from tests.providers.cloud_api.graph import GraphDouble
from wpotp.extensions import db, limiter
from wpotp.jobs.worker import worker_connection
from wpotp.models import Otp
from wpotp.providers.sandbox import read_outbox

from .procs import SentinelSet, WebProc, WorkerProc, wait_until, worker_env

SETTINGS = {**CLOUD_API, "WHATSAPP_MPS": 1000, "STUCK_QUEUED_AFTER": 5, "SWEEP_INTERVAL": 1,
            "REDIS_MIN_REPLICAS": 1, "API_RATE_LIMIT": "100000/minute", "FRAUD_GUARD": "false"}


class Host:
    """A web instance and a worker process, as one machine of a two-host deployment would run them."""

    def __init__(self, name: str, env: dict[str, str], tmp_path):
        folder = tmp_path / f"host-{name}"
        folder.mkdir()
        env = {**env, "WPOTP_INSTANCE_DIR": str(folder)}
        self.web = WebProc(env, folder / "web.log")
        self.worker = WorkerProc(env, folder / "worker.log", threads=2)

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()

    def logs(self) -> str:
        return f"--- web\n{self.web.log()[-6000:]}\n--- worker\n{self.worker.log()[-6000:]}"


def _code_of(send) -> tuple[str, str]:
    body = send.json
    return "+" + body["to"], body["template"]["components"][0]["parameters"][0]["text"]


class Traffic:
    """Sends through host A, one every `every` seconds; verifies through host B each code that
    reached the provider. Keeps every answer."""

    def __init__(self, a: Host, b: Host, key, graph: GraphDouble, every: float = 0.08):
        self.a, self.b, self.key, self.graph, self.every = a.web.url, b.web.url, key, graph, every
        self.sends: list[tuple[int, str | None, str | None, str]] = []  # status, error code, otp id, recipient
        self.verifies: list[tuple[int, str | None]] = []
        self.verified: set[str] = set()
        self._stop, self._give_up = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._verify, daemon=True)]

    def _post(self, url: str, body: dict) -> tuple[int, dict]:
        try:
            r = requests.post(url, json=body, headers=self.key.headers, timeout=10)
        except requests.RequestException as exc:
            return 0, {"error": {"code": type(exc).__name__}}
        return r.status_code, r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}

    def _send(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            n += 1
            recipient = f"+9055540{n:05d}"
            status, body = self._post(f"{self.a}/v1/otp/send", {"recipient": recipient})
            self.sends.append((status, (body.get("error") or {}).get("code"), body.get("id"), recipient))

    def _verify(self) -> None:
        # Until the sender has ended (not merely been told to stop: its last send may still be in
        # flight, to be appended after a look at unverified() found nothing) and nothing is left.
        while not self._give_up.is_set() and (self._threads[0].is_alive() or self.unverified()):
            if self.verify_pending() == 0:
                time.sleep(0.1)

    def verify_pending(self) -> int:
        """Verify through host B every accepted OTP whose code the provider has; returns how many were tried."""
        codes = dict(_code_of(send) for send in self.graph.sends)
        tried = 0
        for status, _code, otp_id, recipient in list(self.sends):
            if status != 201 or otp_id in self.verified or recipient not in codes:
                continue
            tried += 1
            answer, body = self._post(f"{self.b}/v1/otp/{otp_id}/verify", {"code": codes[recipient]})
            self.verifies.append((answer, (body.get("error") or {}).get("code")))
            if answer == 200 and body.get("verified") is True:
                self.verified.add(otp_id)
        return tried

    def unverified(self) -> list[str]:
        return [otp_id for status, _c, otp_id, _r in list(self.sends) if status == 201 and otp_id not in self.verified]

    def accepted(self) -> list[str]:
        return [otp_id for status, _c, otp_id, _r in self.sends if status == 201]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop_sending(self) -> None:
        self._stop.set()
        self._threads[0].join(timeout=30)

    def finish(self, timeout: float) -> None:
        self._threads[1].join(timeout=timeout)
        self._give_up.set()
        self._threads[1].join(timeout=15)


def _statuses(app, ids: list[str]) -> Counter:
    with app.app_context():
        rows = db.session.execute(select(Otp.status).where(Otp.id.in_(ids))).scalars().all()
        db.session.remove()
    return Counter(str(status) for status in rows)


def _history(app, recipients: list[str]) -> list[str]:
    """What the database says about these recipients' OTPs: their sends and events (for a failure message)."""
    from wpotp.models import Event, SendAttempt

    lines = []
    with app.app_context():
        for otp in db.session.scalars(select(Otp).where(Otp.recipient.in_(recipients))):
            attempts = db.session.scalars(select(SendAttempt).where(SendAttempt.otp_id == otp.id)).all()
            events = db.session.scalars(select(Event).where(Event.otp_id == otp.id)).all()
            lines.append(f"{otp.id} {otp.recipient} created {otp.created_at} status {otp.status} attempts "
                         f"{[(a.created_at.isoformat(), a.generation, a.ok, a.error) for a in attempts]} events "
                         f"{[(e.created_at.isoformat(), e.type) for e in events]}")
        db.session.remove()
    return lines


def _recipients_with_rows(app, recipients: list[str]) -> list[str]:
    with app.app_context():
        rows = db.session.execute(select(Otp.recipient).where(Otp.recipient.in_(recipients))).scalars().all()
        db.session.remove()
    return list(rows)


def test_two_hosts_lose_no_otp_when_the_redis_master_fails_over(postgresql_only, make_app, app, tmp_path, figures):
    with SentinelSet(tmp_path / "redis") as redis_set, GraphDouble() as graph:
        settings = {**SETTINGS, "WHATSAPP_GRAPH_URL": graph.url}
        web = make_app(REDIS_URL=redis_set.url(), RATELIMIT_STORAGE_URI=redis_set.url(), **settings)
        key = make_key(web, mode="live")
        env = worker_env(web, redis_set.url(), **settings)
        hosts = [Host("a", env, tmp_path), Host("b", env, tmp_path)]
        try:
            for host in hosts:
                host.web.ready()
            wait_until(lambda: redis_set.master.client().scard("wpotp:workers") == 2, 30,
                       what="both worker processes to start")
            traffic = Traffic(hosts[0], hosts[1], key, graph).start()
            wait_until(lambda: len(traffic.verified) >= 10, 30, what="the first codes to verify through host B")
            old_master = redis_set.master_port()
            sent_before = len(traffic.sends)
            new_master = redis_set.failover()
            # Keep sending until host A has answered 201 again for a while on the new master.
            wait_until(lambda: sum(1 for s in traffic.sends[sent_before:] if s[0] == 201) >= 40, 60,
                       what="sends to be accepted after the failover")
            traffic.stop_sending()
            traffic.finish(timeout=60)
            statuses = _statuses(web, traffic.accepted())
            refused = [r for status, _c, _id, r in traffic.sends if status != 201]
            left_behind = _recipients_with_rows(web, refused)
            per_recipient = Counter("+" + s.json["to"] for s in graph.sends)
            twice = _history(web, [r for r, n in per_recipient.items() if n > 1])
            unverified = set(traffic.unverified())
            missing = _history(web, [r for status, _c, otp_id, r in traffic.sends if otp_id in unverified])
        except BaseException:
            for host in hosts:
                print(host.logs())
            raise
        finally:
            for host in hosts:
                host.stop()
    sends = Counter(status_code for status_code, *_rest in traffic.sends)
    answers = Counter((status, code) for status, code, _id, _r in traffic.sends)
    accepted_recipients = [r for status, _c, _id, r in traffic.sends if status == 201]
    figures(accepted=sends[201], refused_503=sends[503], verifies=len(traffic.verifies),
            provider_sends=len(graph.sends), after_failover=len(traffic.sends) - sent_before)
    assert new_master != old_master
    assert set(answers) <= {(201, None), (503, "SERVICE_UNAVAILABLE")}, answers
    assert not unverified, f"accepted but never verified: {missing}"
    assert statuses == Counter({"VERIFIED": len(traffic.accepted())})
    assert all(per_recipient[r] == 1 for r in accepted_recipients), twice
    assert set(v for v, _code in traffic.verifies) <= {200, 503}, Counter(traffic.verifies)
    assert not left_behind, f"a refused send left its OTP row behind: {left_behind[:10]}"
    assert not graph.problems


def test_every_redis_client_of_an_app_behind_sentinel_uses_the_master_and_its_database(make_app, app, tmp_path):
    """REDIS_URL=redis+sentinel://.../wpotp/3: the API budget (Flask-Limiter's storage), the
    hand-off (seal, queue), the worker's own pool and /readyz all reach database 3 of the master."""
    with SentinelSet(tmp_path / "redis", replicas=1) as redis_set:
        url = redis_set.url(3)
        web = make_app(REDIS_URL=url, RATELIMIT_STORAGE_URI=url, REDIS_MIN_REPLICAS=1)
        key = make_key(web)
        client = web.test_client()
        sent = client.post("/v1/otp/send", headers=key.headers, json={"recipient": "+905556200001"})
        master = redis_set.master.client()
        master.select(3)
        keys = {k.decode() for k in master.keys("*")}
        work_queues(web)  # a real RQ worker on the workers' own pool (jobs/worker.py: worker_connection)
        with web.app_context():
            storage = limiter.storage
            worker_pool = worker_connection(web).connection_pool
            outbox = read_outbox(recipient="+905556200001")
        ready = client.get("/readyz")
        stray = redis_set.master.client().dbsize()  # database 0 of the master: nothing went there
    assert sent.status_code == 201, sent.get_json()
    assert any("LIMITER/api/" in k for k in keys), sorted(keys)
    assert any(k.startswith("wpotp:seal:") for k in keys), sorted(keys)
    assert type(storage).__name__ == "RedisSentinelStorage" and isinstance(worker_pool, SentinelConnectionPool)
    assert [m["otpId"] for m in outbox] == [sent.get_json()["id"]]
    assert ready.status_code == 200 and ready.get_json()["checks"]["redis"] == "ok"
    assert stray == 0
