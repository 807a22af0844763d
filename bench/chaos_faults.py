"""The chaos soak's faults, drawn at seeded random times, and the subscribers' own actions through the
real web app (unsubscribe, pause, consult_booked)."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from bench.chaos_infra import Child, Cluster, RelayState

KINDS = ("kill9_dispatch", "kill9_scheduler", "sigterm", "pg_restart", "pg_terminate",
         "relay_drop", "relay_421", "relay_silent", "content_valid", "content_invalid")
CRASHES = frozenset({"kill9_dispatch", "kill9_scheduler", "sigterm", "pg_restart", "pg_terminate"})
"""Faults after which a message can go twice (a send whose outcome was never recorded)."""
SUBJECT_EDIT = "(edited) "


@dataclass
class Fault:
    kind: str
    at: float
    """time.time() when it was injected."""
    detail: str = ""


class World(Protocol):
    """What the faults reach: the driver's processes and parts."""

    cluster: Cluster
    database: str
    content_dir: Path
    lock: threading.Lock

    @property
    def relay(self) -> RelayState: ...

    def passes(self) -> list[Child]: ...

    def schedulers(self) -> list[Child]: ...

    def restart_scheduler(self, old: Child, after: float) -> None: ...

    def say(self, text: str) -> None: ...


class Injector(threading.Thread):
    """Each kind `per_kind` times, at uniform random moments of [10 s, 80% of `seconds`] (the
    virtual clock skips empty instants, so the run often ends before `seconds`)."""

    def __init__(self, world: World, rng: random.Random, seconds: float, per_kind: int) -> None:
        super().__init__(daemon=True, name="chaos faults")
        self.world = world
        self.rng = rng
        self.plan = sorted((rng.uniform(10, max(12.0, seconds * 0.8)), kind)
                           for kind in KINDS for _ in range(per_kind))
        self.log: list[Fault] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.started_at = time.time()
        self._edits = 0
        self._broken: list[tuple[Path, str]] = []

    def run(self) -> None:
        for offset, kind in self.plan:
            if self.stop_event.wait(max(0.0, self.started_at + offset - time.time())):
                return
            try:
                detail = getattr(self, kind)()
            except Exception as error:  # a fault that could not be injected is reported, not fatal
                self.errors.append(f"{kind}: {type(error).__name__}: {error}")
                continue
            if detail is not None:
                self.log.append(Fault(kind, time.time(), detail))
                self.world.say(f"fault {kind}: {detail}")

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)
        for path, text in self._broken:
            path.write_text(text, encoding="utf-8")

    def counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.log)

    # -- the faults --------------------------------------------------------------------------

    def _running_pass(self, wait: float = 10) -> Child | None:
        deadline = time.time() + wait
        while time.time() < deadline:
            alive = [c for c in self.world.passes() if c.alive and time.time() - c.started > 1.5]
            if alive:
                return self.rng.choice(alive)
            time.sleep(0.05)
        return None

    def kill9_dispatch(self) -> str | None:
        child = self._running_pass()
        if child is None or not child.signal(signal.SIGKILL):
            return None
        return child.name

    def kill9_scheduler(self) -> str | None:
        alive = [c for c in self.world.schedulers() if c.alive]
        if not alive:
            return None
        child = self.rng.choice(alive)
        if not child.signal(signal.SIGKILL):
            return None
        self.world.restart_scheduler(child, self.rng.uniform(2, 5))
        return child.name

    def sigterm(self) -> str | None:
        if self.rng.random() < 0.5:
            child = self._running_pass()
            if child is not None and child.signal(signal.SIGTERM):
                return child.name
        alive = [c for c in self.world.schedulers() if c.alive]
        if not alive:
            return None
        child = self.rng.choice(alive)
        if not child.signal(signal.SIGTERM):
            return None
        self.world.restart_scheduler(child, self.rng.uniform(2, 5))
        return child.name

    def pg_restart(self) -> str:
        started = time.time()
        self.world.cluster.restart()
        return f"pg_ctl restart -m fast ({time.time() - started:.1f} s)"

    def pg_terminate(self) -> str:
        return f"{self.world.cluster.terminate_backends(self.world.database)} backends"

    def relay_drop(self) -> str:
        count = self.rng.randint(1, 3)
        self.world.relay.drop += count
        return f"next {count} DATA dropped"

    def relay_421(self) -> str:
        seconds = self.rng.uniform(3, 8)
        self.world.relay.refuse_until = time.time() + seconds
        return f"421 for {seconds:.1f} s"

    def relay_silent(self) -> str:
        seconds = self.rng.uniform(22, 30)
        self.world.relay.silent_until = time.time() + seconds
        return f"silent for {seconds:.1f} s"

    def content_valid(self) -> str | None:
        """A subject of a step changed (kept): later emails of that step carry the new one."""
        sequences = [path for path in sorted((self.world.content_dir / "sequences").glob("*.yaml"))
                     if path.name != "system.yaml"]
        for path in self.rng.sample(sequences, len(sequences)):
            text = path.read_text(encoding="utf-8")
            plain = re.findall(r"^    subject: ([A-Z][^\"{\n]*)$", text, flags=re.MULTILINE)
            if plain:
                subject = self.rng.choice(plain)
                path.write_text(text.replace(f"    subject: {subject}\n",
                                             f"    subject: {SUBJECT_EDIT}{subject}\n", 1),
                                encoding="utf-8")
                self._edits += 1
                return f"{path.name}: {subject!r}"
        return None

    def content_invalid(self) -> str | None:
        """A broken Jinja tag in one template, put right 15-25 s later."""
        if self._broken:
            return None
        templates = sorted((self.world.content_dir / "templates" / "emails").glob("*/*.md"))
        path = self.rng.choice(templates)
        text = path.read_text(encoding="utf-8")
        self._broken.append((path, text))
        path.write_text(text + "\n{% if broken %}\n", encoding="utf-8")
        seconds = self.rng.uniform(15, 25)

        def put_right() -> None:
            time.sleep(seconds)
            path.write_text(text, encoding="utf-8")
            self._broken.remove((path, text))

        threading.Thread(target=put_right, daemon=True).start()
        return f"{path.parent.name}/{path.name} broken for {seconds:.0f} s"


# -- subscribers acting through the web app ---------------------------------------------------

@dataclass
class Action:
    kind: str
    subscriber: UUID
    email: str
    started: float
    done: float
    virtual: str
    status: int


@dataclass(eq=False)
class Actor(threading.Thread):
    """Unsubscribes, pauses (2 weeks) and consult_booked events for random people, through HTTP."""

    base_url: str
    links: Any
    api_key: str
    people: list[tuple[UUID, str]]
    per_kind: int
    seconds: float
    rng: random.Random
    virtual_now: Any
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True, name="chaos web actions")
        self.stop_event = threading.Event()
        chosen = self.rng.sample(self.people, min(len(self.people), 3 * self.per_kind))
        kinds = ["unsubscribe", "pause", "consult_booked"] * self.per_kind
        self.plan = sorted((self.rng.uniform(5, self.seconds * 0.7), kind, person)
                           for kind, person in zip(kinds, chosen, strict=False))

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            begun = time.time()
            for offset, kind, (subscriber, email) in self.plan:
                if self.stop_event.wait(max(0.0, begun + offset - time.time())):
                    return
                started = time.time()
                try:
                    status = getattr(self, kind)(client, subscriber)
                except Exception as error:
                    self.errors.append(f"{kind}: {type(error).__name__}: {error}")
                    continue
                if status >= 300:
                    self.errors.append(f"{kind} {email}: HTTP {status}")
                    continue
                self.actions.append(Action(kind, subscriber, email, started, time.time(),
                                           self.virtual_now().isoformat(), status))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)

    def _path(self, url: str) -> str:
        return "/" + url.split("/", 3)[3]

    def unsubscribe(self, client: Any, subscriber: UUID) -> int:
        url = self._path(self.links.for_subscriber(subscriber).unsubscribe_url)
        return int(client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code)

    def pause(self, client: Any, subscriber: UUID) -> int:
        url = self._path(self.links.for_subscriber(subscriber).preferences_url)
        page = client.get(url)
        found = re.search(r'name="csrf_token"\s+value="([^"]+)"', page.text)
        cookie = page.cookies.get("nurture_csrf") or client.cookies.get("nurture_csrf")
        if found is None or not cookie:
            raise RuntimeError(f"no CSRF field or cookie on the preferences page ({page.status_code})")
        answer = client.post(url, data={"csrf_token": found.group(1), "action": "pause",
                                        "pause": "2w"}, headers={"Cookie": f"nurture_csrf={cookie}"})
        # The notice speaks the subscriber's language; a refused form answers 422.
        if answer.status_code != 200 or 'name="csrf_token"' not in answer.text:
            raise RuntimeError(f"the pause was not confirmed (HTTP {answer.status_code})")
        return int(answer.status_code)

    def consult_booked(self, client: Any, subscriber: UUID) -> int:
        answer = client.post(f"/api/v1/subscribers/{subscriber}/events",
                             json={"event": "consult_booked"}, headers={"X-API-Key": self.api_key})
        return int(answer.status_code)
