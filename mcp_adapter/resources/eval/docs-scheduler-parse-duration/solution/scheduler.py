"""A small in-process job scheduler: jobs run at fixed intervals or at times of day, with retries and a history.

The scheduler is driven by the caller's clock (`tick(now)`), which keeps it deterministic and easy to test: nothing
here sleeps or starts threads.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 60 * SECONDS_PER_MINUTE
SECONDS_PER_DAY = 24 * SECONDS_PER_HOUR
HISTORY_LIMIT = 200
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 30

_UNITS = {"s": 1, "m": SECONDS_PER_MINUTE, "h": SECONDS_PER_HOUR, "d": SECONDS_PER_DAY}
_DURATION = re.compile(r"(\d+)([smhd])")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class JobState(Enum):
    """Where a job stands."""

    IDLE = "idle"
    RUNNING = "running"
    WAITING_RETRY = "waiting_retry"
    PAUSED = "paused"
    FAILED = "failed"


class SchedulerError(Exception):
    """A job that cannot be scheduled, or a call the scheduler cannot honour."""


def parse_duration(text: str) -> int:
    """The duration `text` in seconds (an int): one or more numbers each followed by a unit, s, m, h or d, with
    nothing between them ('90s', '15m', '2h', '1d', '1h30m'). Raises ValueError for anything else."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("empty duration")
    position, total = 0, 0
    for match in _DURATION.finditer(cleaned):
        if match.start() != position:
            raise ValueError(f"cannot read duration {text!r}")
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(cleaned) or total == 0:
        raise ValueError(f"cannot read duration {text!r}")
    return total


def parse_time_of_day(text: str) -> int:
    """Seconds after midnight of an `HH:MM` time; ValueError for anything else."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"cannot read time of day {text!r}")
    return int(match.group(1)) * SECONDS_PER_HOUR + int(match.group(2)) * SECONDS_PER_MINUTE


def format_duration(seconds: int) -> str:
    """The shortest duration text that parse_duration reads back as `seconds` ('1h30m' for 5400)."""
    if seconds <= 0:
        raise ValueError("a duration is positive")
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass
class Schedule:
    """When a job is due: every `interval` seconds, or once a day at `at` seconds after midnight."""

    interval: int | None = None
    at: int | None = None

    def __post_init__(self) -> None:
        if (self.interval is None) == (self.at is None):
            raise SchedulerError("a schedule has an interval or a time of day, not both and not neither")
        if self.interval is not None and self.interval <= 0:
            raise SchedulerError("the interval must be positive")

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """'every 15m' or 'daily at 06:30'."""
        words = text.strip().lower().split()
        if len(words) == 2 and words[0] == "every":
            return cls(interval=parse_duration(words[1]))
        if len(words) == 3 and words[:2] == ["daily", "at"]:
            return cls(at=parse_time_of_day(words[2]))
        raise SchedulerError(f"cannot read schedule {text!r}: use 'every DURATION' or 'daily at HH:MM'")

    def next_after(self, now: int) -> int:
        """The first time after `now` at which the schedule is due."""
        if self.interval is not None:
            return now + self.interval
        assert self.at is not None
        day_start = now - now % SECONDS_PER_DAY
        candidate = day_start + self.at
        return candidate if candidate > now else candidate + SECONDS_PER_DAY

    def describe(self) -> str:
        if self.interval is not None:
            return f"every {format_duration(self.interval)}"
        assert self.at is not None
        hours, rest = divmod(self.at, SECONDS_PER_HOUR)
        return f"daily at {hours:02d}:{rest // SECONDS_PER_MINUTE:02d}"


@dataclass
class Run:
    """One run of a job: when it started, whether it succeeded, and the error when it did not."""

    job: str
    started: int
    ok: bool
    error: str | None = None
    attempt: int = 1


@dataclass
class Job:
    """A named action on a schedule, with its retry policy and its state."""

    name: str
    action: Callable[[], object]
    schedule: Schedule
    retries: int = DEFAULT_RETRIES
    backoff: int = DEFAULT_BACKOFF_S
    state: JobState = JobState.IDLE
    next_run: int = 0
    attempt: int = 0
    tags: set[str] = field(default_factory=set)

    def is_due(self, now: int) -> bool:
        return self.state in (JobState.IDLE, JobState.WAITING_RETRY) and self.next_run <= now


class History:
    """The most recent runs, oldest first, at most HISTORY_LIMIT of them."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self._runs: deque[Run] = deque(maxlen=limit)

    def add(self, run: Run) -> None:
        self._runs.append(run)

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def for_job(self, name: str) -> list[Run]:
        """The runs of one job, oldest first."""
        return [run for run in self._runs if run.job == name]

    def failures(self) -> list[Run]:
        return [run for run in self._runs if not run.ok]

    def success_rate(self, name: str | None = None) -> float | None:
        """The share of runs that succeeded (of one job, or of all); None when there were none."""
        runs = self.for_job(name) if name else list(self._runs)
        if not runs:
            return None
        return sum(1 for run in runs if run.ok) / len(runs)


class Scheduler:
    """Jobs by name, driven by `tick(now)`."""

    def __init__(self, *, history_limit: int = HISTORY_LIMIT) -> None:
        self._jobs: dict[str, Job] = {}
        self.history = History(history_limit)

    # -- the jobs --------------------------------------------------------------------------------------------------

    def add(self, name: str, action: Callable[[], object], schedule: Schedule | str, *, now: int = 0,
            retries: int = DEFAULT_RETRIES, backoff: int = DEFAULT_BACKOFF_S, tags: Iterable[str] = ()) -> Job:
        """Schedule `action` under `name`; its first run is the schedule's first time after `now`."""
        if name in self._jobs:
            raise SchedulerError(f"a job named {name!r} exists already")
        if retries < 0 or backoff < 0:
            raise SchedulerError("retries and backoff cannot be negative")
        parsed = Schedule.parse(schedule) if isinstance(schedule, str) else schedule
        job = Job(name=name, action=action, schedule=parsed, retries=retries, backoff=backoff, tags=set(tags))
        job.next_run = parsed.next_after(now)
        self._jobs[name] = job
        return job

    def remove(self, name: str) -> Job:
        try:
            return self._jobs.pop(name)
        except KeyError:
            raise SchedulerError(f"no job named {name!r}") from None

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise SchedulerError(f"no job named {name!r}") from None

    def jobs(self, *, tag: str | None = None) -> list[Job]:
        """Every job (with `tag`, if given), in the order they were added."""
        return [job for job in self._jobs.values() if tag is None or tag in job.tags]

    def pause(self, name: str) -> None:
        job = self.get(name)
        if job.state is JobState.RUNNING:
            raise SchedulerError(f"{name} is running; pause it when it ends")
        job.state = JobState.PAUSED

    def resume(self, name: str, *, now: int) -> None:
        job = self.get(name)
        if job.state is not JobState.PAUSED:
            raise SchedulerError(f"{name} is not paused")
        job.state = JobState.IDLE
        job.next_run = job.schedule.next_after(now)

    # -- time ------------------------------------------------------------------------------------------------------

    def _due_jobs(self, now: int) -> list[Job]:
        """The jobs due at `now`, the most overdue first (then by name)."""
        due = [job for job in self._jobs.values() if job.is_due(now)]
        return sorted(due, key=lambda job: (job.next_run, job.name))

    def next_due(self, now: int) -> int | None:
        """When the next job is due (`now` when one is due already); None without active jobs."""
        if self._due_jobs(now):
            return now
        waiting = [job.next_run for job in self._jobs.values()
                   if job.state in (JobState.IDLE, JobState.WAITING_RETRY)]
        return min(waiting) if waiting else None

    def pending(self, now: int) -> list[str]:
        """The names of the jobs due at `now`, in the order tick would run them."""
        return [job.name for job in self._due_jobs(now)]

    def tick(self, now: int) -> list[Run]:
        """Run every job due at `now`, once each; returns their runs."""
        runs = []
        for job in self._due_jobs(now):
            runs.append(self._run(job, now))
        return runs

    def run_until(self, end: int, *, step: int = SECONDS_PER_MINUTE, start: int = 0) -> list[Run]:
        """Tick from `start` to `end` every `step` seconds; every run made."""
        if step <= 0:
            raise SchedulerError("step must be positive")
        runs: list[Run] = []
        for now in range(start, end + 1, step):
            runs.extend(self.tick(now))
        return runs

    def _run(self, job: Job, now: int) -> Run:
        job.state = JobState.RUNNING
        job.attempt += 1
        try:
            job.action()
        except Exception as exc:  # noqa: BLE001  (a job's failure is recorded, never raised to tick's caller)
            run = Run(job=job.name, started=now, ok=False, error=f"{type(exc).__name__}: {exc}",
                      attempt=job.attempt)
            self._after_failure(job, now)
        else:
            run = Run(job=job.name, started=now, ok=True, attempt=job.attempt)
            job.attempt = 0
            job.state = JobState.IDLE
            job.next_run = job.schedule.next_after(now)
        self.history.add(run)
        return run

    def _after_failure(self, job: Job, now: int) -> None:
        if job.attempt <= job.retries:
            job.state = JobState.WAITING_RETRY
            job.next_run = now + job.backoff * job.attempt
        else:
            job.state = JobState.FAILED
            job.attempt = 0

    def reset(self, name: str, *, now: int) -> None:
        """A failed job back on its schedule."""
        job = self.get(name)
        if job.state is not JobState.FAILED:
            raise SchedulerError(f"{name} has not failed")
        job.state = JobState.IDLE
        job.next_run = job.schedule.next_after(now)

    # -- reports ---------------------------------------------------------------------------------------------------

    def summary(self) -> list[dict[str, object]]:
        """One row per job: name, schedule, state, next run, success rate."""
        return [
            {"name": job.name, "schedule": job.schedule.describe(), "state": job.state.value,
             "next_run": job.next_run, "success_rate": self.history.success_rate(job.name)}
            for job in self._jobs.values()
        ]

    def overdue(self, now: int, *, by: int = 0) -> list[str]:
        """The jobs due more than `by` seconds ago."""
        return [job.name for job in self._due_jobs(now) if now - job.next_run > by]

    def failed(self) -> list[str]:
        return [job.name for job in self._jobs.values() if job.state is JobState.FAILED]


def format_table(rows: list[dict[str, object]]) -> str:
    """The summary as a plain-text table."""
    if not rows:
        return "(no jobs)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_cell(row[c])) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_cell(row[c]).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0%}"
    return str(value)


def demo() -> str:
    """A day of a small scheduler, as its summary table."""
    counter = {"n": 0}

    def flaky() -> None:
        counter["n"] += 1
        if counter["n"] % 3 == 0:
            raise RuntimeError("every third call fails")

    scheduler = Scheduler()
    scheduler.add("backup", lambda: None, "daily at 02:00")
    scheduler.add("poll", flaky, "every 15m", tags={"io"})
    scheduler.add("report", lambda: None, "every 6h", retries=0)
    scheduler.run_until(SECONDS_PER_DAY, step=5 * SECONDS_PER_MINUTE)
    return format_table(scheduler.summary())


if __name__ == "__main__":
    print(demo())
