"""Rate limiting, cooldown and backoff of API teachers (symkd.teachers.ratelimit / base).

What a user relies on: an RPM/TPM limit is never exceeded over any stretch of time, yet the
first requests go at once; a per-minute limit is spread over the minute instead of being
spent in one burst (providers enforce it over short windows and answer a burst with 429s);
an oversized request neither waits forever nor breaks the long-run rate; after a 429 with
Retry-After every worker pauses, not just the one that got it. Most checks run on a fake
clock; the few real-time ones take well under a second each.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from symkd.teachers.base import APITeacher, RetryableError, estimate_tokens
from symkd.teachers.ratelimit import Cooldown, TokenBucket
from symkd.teachers.messages import Completion, GenerationParams, Message, Request, Response


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def send_times(bucket: TokenBucket, clock: FakeClock, calls: list[tuple[float, float]]) -> list[float]:
    """Reserve ``(at, cost)`` slots in order; return when each may go."""
    out = []
    for at, cost in calls:
        clock.now = at
        out.append(at + bucket.reserve(cost))
    return out


# -- TokenBucket ------------------------------------------------------------------------


def test_rpm_allows_a_small_burst_then_spreads_requests_evenly():
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)  # 10 a second; bursts of one second's worth
    times = [t - 1000.0 for t in send_times(bucket, clock, [(1000.0, 1)] * 30)]
    assert times[:10] == [0.0] * 10  # the first second's worth goes at once
    assert times[10:] == pytest.approx([0.1 * k for k in range(1, 21)])  # then one every 100 ms


def test_no_window_ever_exceeds_burst_plus_rate():
    clock = FakeClock()
    bucket = TokenBucket(1200, clock=clock)  # 20/s, burst 20
    # callers arriving in clumps and gaps, as workers do
    arrivals = [(1000.0 + 0.37 * (i // 25) + 0.001 * i, 1) for i in range(400)]
    times = send_times(bucket, clock, arrivals)
    assert times == sorted(times)  # first come, first served
    for window in (0.5, 1.0, 5.0, 60.0):
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t < start + window)
            assert inside <= 20 + 20 * window + 1e-9, (window, start, inside)
    # and over the whole run the rate is the limit, not less
    assert (len(times) - 20) / (times[-1] - times[0]) == pytest.approx(20.0, rel=1e-6)


def test_an_idle_bucket_refills_only_up_to_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)
    send_times(bucket, clock, [(1000.0, 1)] * 10)
    times = send_times(bucket, clock, [(2000.0, 1)] * 12)  # long idle: full again, not 10 000 tokens
    assert [t - 2000.0 for t in times] == pytest.approx([0.0] * 10 + [0.1, 0.2])


def test_a_cost_larger_than_the_bucket_goes_once_full_and_leaves_debt():
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)  # e.g. TPM 600: 10 tokens a second, bucket of 10
    big, small = send_times(bucket, clock, [(1000.0, 50), (1000.0, 5)])
    assert big == 1000.0  # a full bucket lets it through now instead of never
    assert small - 1000.0 == pytest.approx(4.5)  # the 40-token debt is repaid first


def test_explicit_burst_and_bad_limits():
    clock = FakeClock()
    one_at_a_time = TokenBucket(120, burst=1, clock=clock)  # 2/s, strictly spaced
    assert [t - 1000 for t in send_times(one_at_a_time, clock, [(1000.0, 1)] * 3)] == pytest.approx([0, 0.5, 1.0])
    assert TokenBucket(30).capacity == 1.0  # slow limits still let one request through
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(60, burst=0)


def test_acquire_really_waits_and_keeps_arrival_order():
    bucket = TokenBucket(6000)  # 100/s, burst 100
    done: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        done.append(i)

    async def main() -> float:
        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(150)))
        return time.monotonic() - began

    elapsed = asyncio.run(main())
    assert 0.45 <= elapsed < 1.5  # 100 at once, then 50 more at 100/s
    assert done == list(range(150))


# -- Cooldown ---------------------------------------------------------------------------


def test_cooldown_is_free_when_unset_and_never_shortened():
    clock = FakeClock()
    cooldown = Cooldown(clock)
    assert cooldown.remaining() == 0.0
    cooldown.extend(0.3)
    cooldown.extend(0.05)  # a later, shorter Retry-After does not cut the first one
    assert cooldown.remaining() == pytest.approx(0.3)
    clock.now += 0.31
    assert cooldown.remaining() == 0.0

    async def quick() -> float:
        began = time.monotonic()
        await Cooldown().wait()
        return time.monotonic() - began

    assert asyncio.run(quick()) < 0.01


def test_cooldown_holds_every_waiter_and_follows_extensions():
    async def main() -> list[float]:
        cooldown = Cooldown()
        began = time.monotonic()
        cooldown.extend(0.1)

        async def waiter() -> float:
            await cooldown.wait()
            return time.monotonic() - began

        async def extend_later() -> None:
            await asyncio.sleep(0.05)
            cooldown.extend(0.2)  # until 0.25 after the start

        *waits, _ = await asyncio.gather(waiter(), waiter(), waiter(), extend_later())
        return waits

    waits = asyncio.run(main())
    assert all(0.25 <= w < 1.0 for w in waits), waits


# -- through an APITeacher --------------------------------------------------------------


class StubTeacher(APITeacher):
    """Answers after ``delay``; items listed in ``throttle`` first get one 429 (Retry-After)."""

    backend = "stub"

    def __init__(self, *, delay: float = 0.0, throttle: tuple[str, ...] = (), retry_after: float = 0.3, **options):
        super().__init__("stub-model", backoff_base=0.01, **options)
        self.delay, self.throttle, self.retry_after = delay, set(throttle), retry_after
        self.began = time.monotonic()
        self.sends: list[tuple[str, float]] = []
        self.throttled_at: dict[str, float] = {}  # when each 429 came back

    async def send(self, request: Request) -> Response:
        self.sends.append((request.id, time.monotonic() - self.began))
        if request.id in self.throttle:
            self.throttle.discard(request.id)
            await asyncio.sleep(0.02)  # the 429 takes a round trip to come back
            self.throttled_at[request.id] = time.monotonic() - self.began
            raise RetryableError("HTTP 429: slow down", retry_after=self.retry_after)
        await asyncio.sleep(self.delay)
        return Response(completions=[Completion(text=request.id)])


def prompts(*ids: str) -> list[Request]:
    return [Request(id=i, prompt=i) for i in ids]


def test_a_429_pauses_every_worker_for_retry_after():
    teacher = StubTeacher(delay=0.05, throttle=("a",), concurrency=3)
    got = teacher.generate(prompts("a", "b", "c", "d", "e"))
    assert all(r.ok for r in got) and got[0].attempts == 2
    sent = dict(reversed(teacher.sends))  # first send of each id
    throttled = teacher.throttled_at["a"]
    assert sent["b"] < throttled and sent["c"] < throttled  # in flight before the 429 came back
    # d and e were free to go 0.05 s after b and c, but the cooldown held them
    assert sent["d"] >= throttled + 0.3 and sent["e"] >= throttled + 0.3


def test_rpm_limit_through_the_worker_pool():
    teacher = StubTeacher(rpm=1200, concurrency=30)  # 20/s, burst 20
    began = time.monotonic()
    got = teacher.generate(prompts(*(f"q{i}" for i in range(30))))
    assert all(r.ok for r in got)
    assert time.monotonic() - began >= 0.45  # 20 at once, then 10 more 50 ms apart
    times = sorted(t for _, t in teacher.sends)
    assert times[20] - times[0] >= 0.04  # the 21st waited for the bucket


def test_backoff_grows_with_jitter_and_follows_retry_after():
    teacher = StubTeacher(backoff_max=2.0)
    teacher.backoff_base = 0.1
    plain = RetryableError("HTTP 500")
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (8, 2.0)]:
        waits = [teacher.backoff(attempt, plain) for _ in range(50)]
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(set(waits)) > 1  # jittered, so workers do not retry in lockstep
    assert 0.7 <= teacher.backoff(1, RetryableError("429", retry_after=0.7)) <= 0.8
    assert teacher.backoff(1, RetryableError("429", retry_after=600)) <= 2.1  # capped


# -- estimate_tokens --------------------------------------------------------------------


def test_estimate_tokens_counts_input_and_output_budget():
    short = Request(id="a", prompt="x" * 40, params=GenerationParams(max_tokens=10))
    assert estimate_tokens(short) == 40 // 4 + 10
    longer = Request(id="b", prompt="x" * 4000, params=GenerationParams(max_tokens=10))
    assert estimate_tokens(longer) == 1000 + 10
    sampled = Request(id="c", prompt="x" * 40, params=GenerationParams(max_tokens=10, n=4))
    assert estimate_tokens(sampled) == 10 + 40  # every sample spends its output budget
    chat = Request(
        id="d",
        messages=[Message(role="system", content="y" * 100), Message(role="user", content="z" * 100)],
        params=GenerationParams(max_tokens=1),
    )
    assert 50 <= estimate_tokens(chat) - 1 <= 60  # ~4 characters a token, plus a little per message


def test_api_pacing_is_declared_once_for_every_api_backend():
    """ApiPacing: the base applies it (validated), providers pass it through, with their own defaults."""
    import pydantic

    from symkd.teachers.base import ApiPacing
    from symkd.teachers.langchain_chat import LangChainTeacher
    from symkd.teachers.openai_api import OpenAITeacher

    teacher = StubTeacher(pacing=ApiPacing(rpm=30, concurrency=3), timeout=7.0)
    assert (teacher.concurrency, teacher.rpm, teacher.timeout, teacher.backoff_base) == (3, 30, 7.0, 0.01)
    assert teacher.pacing == ApiPacing(concurrency=3, rpm=30, timeout=7.0, backoff_base=0.01)
    with pytest.raises(pydantic.ValidationError, match="concurrency"):
        StubTeacher(concurrency=0)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        StubTeacher(rmp=30)  # a misspelt pacing field is refused, not ignored
    openai = OpenAITeacher("m", base_url="http://127.0.0.1:9/v1", rpm=12)
    assert (openai.concurrency, openai.rpm) == (ApiPacing().concurrency, 12)
    assert LangChainTeacher.pacing_defaults == {"concurrency": 8}
    assert issubclass(LangChainTeacher, type(openai).__mro__[1])  # both are APITeachers: one pacing code path
