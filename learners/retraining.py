"""A retrain: fresh candidates trained on the new concept, promoted only if clearly better.

The job is pure bookkeeping; the application feeds it. Its life:

1. *replaying* -- the pool is replayed from the log into the candidate(s) (``train``).
   Live events that arrive meanwhile are kept, in order, with how the serving model
   scored on them (``observe_live``).
2. ``replay_finished`` starts *shadowing*: each candidate predicts each kept live event
   before learning it, and then each new one. The serving model also predicted each of
   them before learning it, so the errors are paired on events neither had trained on,
   and every candidate keeps learning every live event while it is judged.
3. After each shadowed event a paired sequential test (:mod:`learners.decision`, McNemar
   for a classifier, the sign test on absolute errors for a regressor) may decide:
   *promote* as soon as a candidate is clearly better; *reject* once every candidate is
   clearly worse, but not before ``holdout_events`` were scored (a young candidate is
   worse at first and learns fast); at ``max_holdout_events`` the candidate with more
   wins than losses is promoted, else the serving model stays.

A job may start *unconfirmed*, from the warning zone (a looser ADWIN,
``learners.prequential``): it replays and shadows as any job, but decides nothing until
``confirm`` (the drift alarm). With no alarm within ``confirm_within`` live events it is
*dropped*. The pool (``pool_kind``) is ``"since-change"`` (the events since the estimated
change point), ``"combined"`` (the whole replay window, older events first) or
``"both"``: two candidates, one per pool, raced against the serving model; the first
clearly better one wins.

A candidate that raises on an event cannot be trusted to be whole: the job is
*abandoned* (``abandoned`` says why) and is ``done`` at once; the learner drops it and
keeps its serving model.

>>> from river import linear_model
>>> job = RetrainJob(linear_model.LogisticRegression(), holdout_events=2, max_holdout_events=2)
>>> job.train({"x": 1.0}, True)
>>> job.observe_live({"x": 1.0}, True, serving=False)
False
>>> job.replay_finished()
>>> job.ready
False
>>> job.observe_live({"x": 1.0}, True, serving=False)
True
>>> verdict = job.decide()
>>> verdict.promoted, verdict.wins, verdict.losses, verdict.reason
(True, 2, 0, 'cap')
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from river import base, drift

from learners.changepoint import change_point, largest_rise
from learners.decision import RISE_Z, TRIM, SignTest
from learners.outcomes import ACCURACY, MAE

REPLAYING = "replaying"
SHADOWING = "shadowing"

SINCE_CHANGE = "since-change"
COMBINED = "combined"
BOTH = "both"
RETRAIN_POOLS = (SINCE_CHANGE, COMBINED, BOTH)

#: Why a verdict was reached.
BETTER = "clearly better"
POOL_BETTER = "clearly better on the pool"
AGAIN = "ahead at a second alarm"
WORSE = "clearly worse"
CAPPED = "cap"
UNDECIDED = "undecided"

#: Why a candidate started again (``RetrainJob.restarted``).
OWN_ROSE = "its own error rose"
SERVING_ROSE = "the serving model's error rose after it started"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision, with the paired test's figures and both models' scores on the
    events they were compared on (accuracies, or MAEs)."""

    promoted: bool
    candidate_score: float
    serving_score: float
    trained_on: int
    evaluated_on: int
    metric: str = ACCURACY
    wins: int = 0
    losses: int = 0
    statistic: float = 0.0
    pool: str = SINCE_CHANGE
    reason: str = CAPPED


class Tally:
    """Paired scores of a candidate and the serving model on the same events."""

    def __init__(self) -> None:
        self.evaluated = 0
        self.error = 0.0  # the candidate's errors (misses, or absolute errors)
        self.serving_error = 0.0  # the serving model's on the same events
        self.test = SignTest()

    def add(self, error: float, serving_error: float) -> None:
        self.evaluated += 1
        self.error += error
        self.serving_error += serving_error
        self.test.add(error, serving_error)

    def scores(self, metric: str) -> tuple[float, float]:
        """Both models' accuracies (or MAEs) on these events."""
        n = self.evaluated
        if not n:
            return 0.0, 0.0
        if metric == ACCURACY:  # errors are counts of misses: exact accuracies
            return (n - self.error) / n, (n - self.serving_error) / n
        return self.error / n, self.serving_error / n


class Contender:
    """One candidate model, the pool it learns, and how it compares with the serving
    model: on the pool events since the change (``replayed``) and on live ones (``live``).

    ``since``: the first offset of the replay it learns (None: all of it).
    """

    #: Its own error detector and the scored events it learned since it (re)started,
    #: with both models' errors (``follow``); None in jobs pickled before restarts.
    detector: drift.ADWIN | None = None
    recent: deque[tuple[dict[Any, Any], Any, float, float]] | None = None
    restarts = 0

    def __init__(self, model: Any, pool: str, since: int | None = None) -> None:
        self.model = model
        self.pool = pool
        self.since = since
        self.learned = 0
        self.replayed = Tally()
        self.live = Tally()
        self.out = False  # clearly worse: out of the race, learns no more

    def follow(self, delta: float, keep: int) -> None:
        """Watch this candidate's own error, keeping its last ``keep`` scored events, so it
        can start again from a later change point (``restart_from``)."""
        self.detector = drift.ADWIN(delta=delta)
        self.recent = deque(maxlen=keep)

    def watch(self, x: dict[Any, Any], y: Any, error: float, serving_error: float) -> bool:
        """Keep a scored event; True when the candidate's own error went up (ADWIN)."""
        if self.detector is None or self.recent is None:
            return False
        self.recent.append((x, y, error, serving_error))
        detector = self.detector
        width = detector.width
        before = detector.total / width if width else 0.0
        detector.update(error)
        return bool(detector.drift_detected) and detector.estimation > before

    def own_change(self) -> int:
        """Index in ``recent`` of the first event after the most likely rise of its own
        error, within its detector's window (as the learner estimates a change point)."""
        assert self.recent is not None and self.detector is not None
        events = list(self.recent)[-int(self.detector.width) :]
        return len(self.recent) - len(events) + change_point([e[2] for e in events])

    def serving_rose(self) -> int:
        """Index in ``recent`` after which the serving model's error clearly rose (a
        standardised rise of at least ``RISE_Z``), else 0: the change went on after this
        candidate started, so it learned events from before the latest part of it."""
        if not self.recent:
            return 0
        index, statistic = largest_rise([e[3] for e in self.recent], TRIM)
        return index if statistic >= RISE_Z else 0

    def restart_from(self, index: int, score: Any) -> None:
        """Start again: a fresh clone learns the kept events from ``index`` on, test then
        train, scored against the serving model's errors on them (pool evidence again)."""
        assert self.recent is not None and self.detector is not None
        events = list(self.recent)[index:]
        self.model = self.model.clone()
        self.learned = 0
        self.out = False
        self.replayed, self.live = Tally(), Tally()
        self.detector = drift.ADWIN(delta=self.detector.delta)
        self.recent.clear()
        self.restarts += 1
        for x, y, _, serving_error in events:
            error = score(self.model, x, y)
            self.replayed.add(error, serving_error)
            self.watch(x, y, error, serving_error)
            self.model.learn_one(x, y)
            self.learned += 1

    def verdict(self, promoted: bool, metric: str, reason: str) -> Verdict:
        tally = self.replayed if reason == POOL_BETTER else self.live
        candidate, serving = tally.scores(metric)
        test = tally.test
        return Verdict(
            promoted, candidate, serving, self.learned - self.live.evaluated, tally.evaluated,
            metric, test.wins, test.losses, test.statistic, self.pool, reason,
        )  # fmt: skip


class RetrainJob:
    """Train candidates on replayed and live events, then compare them with the serving
    model, event by event. Classification: the serving model's score of a live event is
    whether it was right."""

    metric = ACCURACY
    #: Why the candidate was given up (it raised), else None. Class attributes too, so
    #: jobs pickled before they existed read their defaults.
    abandoned: str | None = None
    #: Why an unconfirmed job was dropped (no alarm came), else None.
    dropped: str | None = None
    confirmed = True
    confirm_within = 0
    waited = 0
    pool_kind = SINCE_CHANGE
    serving_errors: dict[int, float] = {}  # noqa: RUF012 (read-only default for old jobs)
    #: With labels on their own topic: the labels offset the pool's replay reads up to
    #: (set by the daemon when it submits the replay; a restart replays the same range).
    labels_end: int | None = None
    _rising: list[Contender] = []  # noqa: RUF012 (never mutated in place)
    #: Restarts not yet reported: (pool, reason, events the fresh candidate learned);
    #: the learner drains them (``take_restarts``).
    restarted: tuple[tuple[str, str, int], ...] = ()
    #: The decision once reached: (index of the contender, promoted, reason).
    _decision: tuple[int, bool, str] | None = None

    def __init__(
        self,
        candidate: base.Estimator,
        holdout_events: int = 300,
        max_buffered: int = 20_000,
        pool: tuple[int, int] = (0, 0),
        *,
        max_holdout_events: int = 3000,
        pool_kind: str = SINCE_CHANGE,
        since: int | None = None,
        confirmed: bool = True,
        confirm_within: int = 0,
        serving_errors: dict[int, float] | None = None,
        adwin_delta: float | None = 0.002,
    ) -> None:
        """``pool``: offsets ``[start, end)`` replayed; with ``pool_kind="both"``,
        ``since`` is where the since-change candidate's part of it starts.
        ``adwin_delta``: the confidence of the since-change candidate's own detector
        (None: it never starts again).
        ``serving_errors``: the serving model's errors on pool events it predicted before
        learning them, by offset; the candidates are scored on those too, predicting each
        before learning it (test-then-train on the replay), so the paired test starts
        with the events since the change instead of waiting for new ones."""
        if holdout_events < 1:
            raise ValueError(f"holdout_events must be at least 1, got {holdout_events}")
        if max_holdout_events < holdout_events:
            raise ValueError(
                f"max_holdout_events ({max_holdout_events}) is below holdout_events "
                f"({holdout_events})"
            )
        if pool_kind not in RETRAIN_POOLS:
            raise ValueError(f"pool_kind must be one of {RETRAIN_POOLS}, got {pool_kind!r}")
        self.holdout_events = holdout_events
        self.max_holdout_events = max_holdout_events
        self.max_buffered = max_buffered
        self.pool = pool
        self.pool_kind = pool_kind
        self.confirmed = confirmed
        self.confirm_within = confirm_within
        self.contenders = [Contender(candidate, pool_kind if pool_kind != BOTH else COMBINED)]
        if pool_kind == BOTH:
            since_change = Contender(candidate.clone(), SINCE_CHANGE, since)
            self.contenders.insert(0, since_change)
        # A since-change candidate follows the change: when its own error rises, or the
        # serving model's rose after it started, it starts again from there.
        if adwin_delta:
            for contender in self.contenders:
                if contender.pool == SINCE_CHANGE:
                    contender.follow(adwin_delta, max_holdout_events)
        self.serving_errors = serving_errors or {}
        self._rising: list[Contender] = []
        self.state = REPLAYING
        self.trained_on = 0
        # A bounded buffer: if a replay were ever slower than the live stream, the oldest
        # live events fall out rather than memory growing without end.
        self._live: deque[tuple[dict[Any, Any], Any, Any]] = deque(maxlen=max_buffered)
        self._evaluated = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "contenders" not in state:  # a job pickled before paired decisions
            _upgrade(state)
        self.__dict__.update(state)

    @property
    def candidate(self) -> Any:
        """The candidate promoted (or to be promoted); the first one before a verdict."""
        return self.contenders[self._winner].model

    @candidate.setter
    def candidate(self, model: Any) -> None:
        self.contenders[self._winner].model = model

    @property
    def _winner(self) -> int:
        return self._decision[0] if self._decision is not None else 0

    def restart(self, candidate: base.Estimator) -> None:
        """Begin the replay again with fresh candidates (a restored checkpoint caught this
        job mid-replay); the live events kept so far stay, in order."""
        self.contenders = [
            Contender(candidate if i == 0 else candidate.clone(), c.pool, c.since)
            for i, c in enumerate(self.contenders)
        ]
        self.trained_on = 0
        self._evaluated = 0
        self.state = REPLAYING

    def confirm(self) -> None:
        """The drift alarm came: the job may now decide."""
        self.confirmed = True
        if self.state == SHADOWING and self.abandoned is None:
            self._decision = self._review(self._judge())

    def alarm(self) -> None:
        """A drift alarm while the job runs. The first confirms a job the warning started;
        a later one (the serving model's error rose again while the candidates were judged,
        as in a gradual change) promotes the candidate leading on the live events, if one
        leads (and the change did not go on after it started: ``_review``)."""
        if not self.confirmed:
            self.confirm()
            return
        if self._decision is not None or self.state != SHADOWING or self.abandoned is not None:
            return
        best = max((c for c in self.contenders if not c.out), key=lambda c: c.live.test.statistic,
                   default=None)  # fmt: skip
        if best is not None and best.live.test.statistic > 0:
            self._decision = self._review(self._settle(best, True, AGAIN))

    def train(self, x: dict[Any, Any], y: Any, offset: int | None = None) -> None:
        """Learn one event: a replayed one at ``offset`` (learned by the candidates whose
        pool holds it), or a live one (``offset`` None: all learn it)."""
        if self.abandoned is not None:
            return
        if offset is not None and self._decision is None and offset in self.serving_errors:
            self._score(x, y, self.serving_errors[offset], live=False)
            if self.abandoned is not None:
                return
        for contender in self.contenders:
            if offset is not None and contender.since is not None and offset < contender.since:
                continue
            try:
                contender.model.learn_one(x, y)
            except Exception as exc:  # any model error: the candidate is no longer whole
                self._abandon(exc)
                return
            contender.learned += 1
        self.trained_on += 1
        rising, self._rising = self._rising, []
        for contender in rising:  # after it learned the event that raised its error
            if self._decision is None and not contender.out:
                self._restart(contender, contender.own_change(), OWN_ROSE)
                self._decision = self._review(self._judge())

    def _restart(self, contender: Contender, index: int, reason: str) -> None:
        """Start ``contender`` again from its kept event ``index``; reported."""
        if self.abandoned is not None:
            return
        try:
            contender.restart_from(index, self._error)
        except Exception as exc:  # as in training: the candidate is no longer whole
            self._abandon(exc)
            return
        self.restarted = (*self.restarted, (contender.pool, reason, contender.learned))

    def take_restarts(self) -> tuple[tuple[str, str, int], ...]:
        """The restarts since the last call: (pool, reason, events learned)."""
        restarted, self.restarted = self.restarted, ()
        return restarted

    def _review(self, decision: tuple[int, bool, str] | None) -> tuple[int, bool, str] | None:
        """Promote only a candidate that learned the change as it is now: if the serving
        model's error clearly rose after the candidate started (a gradual change going
        on), it starts again from there, and the events kept may promote it at once."""
        while decision is not None and decision[1] and self.abandoned is None:
            contender = self.contenders[decision[0]]
            index = contender.serving_rose()
            if not index:
                return decision
            self._restart(contender, index, SERVING_ROSE)  # ``recent`` shrinks: this ends
            decision = self._judge()
        return None if self.abandoned is not None else decision

    def replay_finished(self) -> None:
        """The pool is exhausted: score and learn the live events kept meanwhile."""
        self.state = SHADOWING
        for contender in self.contenders:  # a refit in flight takes over: the pool is learned
            settle = getattr(contender.model, "settle", None)
            try:
                if settle is not None and self.abandoned is None:
                    settle()
            except Exception as exc:  # as in training: the candidate is no longer whole
                self._abandon(exc)
        while self._live and self.abandoned is None:
            self._shadow(*self._live.popleft())

    def observe_live(self, x: dict[Any, Any], y: Any, serving: Any) -> bool:
        """Show the job one labelled live event and how the serving model's prediction of
        it scored (right or not; its absolute error for a regression); returns True once
        the job is ``done``."""
        if self.abandoned is not None or self.dropped is not None:
            return True
        if not self.confirmed:
            self.waited += 1
            if self.waited > self.confirm_within:
                self.dropped = f"no drift alarm within {self.confirm_within} events of the warning"
                self._live.clear()
                return True
        if self.state == REPLAYING:
            self._live.append((x, y, serving))
            return False
        self._shadow(x, y, serving)
        return self.done

    @property
    def ready(self) -> bool:
        return self._decision is not None

    @property
    def done(self) -> bool:
        """Decided, abandoned or dropped: either way the learner settles the job."""
        return self.abandoned is not None or self.dropped is not None or self.ready

    def _abandon(self, exc: Exception) -> None:
        self.abandoned = f"{type(exc).__name__}: {exc}"
        self._live.clear()

    def _shadow(self, x: dict[Any, Any], y: Any, serving: Any) -> None:
        if self.abandoned is not None:
            return
        if self._decision is None:
            self._score(x, y, self._serving_error(serving), live=True)
            if self.abandoned is not None:
                return
        self.train(x, y)

    def _score(self, x: dict[Any, Any], y: Any, serving_error: float, live: bool) -> None:
        """Each racing candidate predicts ``x`` (before learning it); then the test."""
        for contender in self.contenders:
            if contender.out:
                continue
            try:
                error = self._error(contender.model, x, y)
            except Exception as exc:
                self._abandon(exc)
                return
            (contender.live if live else contender.replayed).add(error, serving_error)
            if contender.watch(x, y, error, serving_error):
                self._rising = [*self._rising, contender]
        self._evaluated += live
        self._decision = self._review(self._judge())

    def _error(self, model: Any, x: dict[Any, Any], y: Any) -> float:
        return 0.0 if model.predict_one(x) == y else 1.0

    def _serving_error(self, serving: Any) -> float:
        return 0.0 if serving else 1.0

    def _judge(self) -> tuple[int, bool, str] | None:
        """The verdict the events scored so far allow, if any (none before ``confirm``)."""
        if not self.confirmed:
            return None
        racing = [c for c in self.contenders if not c.out]
        for contender in racing:
            # The pool's evidence may only promote: a young candidate is scored there.
            if contender.replayed.test.clearly_better():
                return self._settle(contender, True, POOL_BETTER)
            if contender.live.test.clearly_better():
                return self._settle(contender, True, BETTER)
        if self._evaluated >= self.holdout_events:
            for contender in racing:  # a restarted candidate is young again
                young = contender.live.evaluated < self.holdout_events
                contender.out = not young and contender.live.test.clearly_worse()
            if all(c.out for c in self.contenders):
                best = max(self.contenders, key=lambda c: c.live.test.statistic)
                return self._settle(best, False, WORSE)
        if self._evaluated >= self.max_holdout_events:
            best = max((c for c in racing if not c.out), key=lambda c: c.live.test.statistic)
            return self._settle(best, best.live.test.wins > best.live.test.losses, CAPPED)
        return None

    def _settle(self, contender: Contender, promoted: bool, reason: str) -> tuple[int, bool, str]:
        return self.contenders.index(contender), promoted, reason

    def decide(self) -> Verdict:
        """The verdict, its figures from the events that decided it (the pool's, or the
        live ones'); ``trained_on`` counts what the candidate learned besides the live
        events it was scored on (the pool, and live events after the decision). Before a
        decision: the figures so far, not promoted."""
        index, promoted, reason = self._decision or (0, False, UNDECIDED)
        return self.contenders[index].verdict(promoted, self.metric, reason)


class RegressionRetrainJob(RetrainJob):
    """A retrain of a regressor: the paired test compares absolute errors (the sign test);
    the scores are mean absolute errors.

    >>> from river import linear_model
    >>> job = RegressionRetrainJob(
    ...     linear_model.LinearRegression(), holdout_events=1, max_holdout_events=1
    ... )
    >>> job.replay_finished()
    >>> job.observe_live({"x": 1.0}, 0.5, serving=2.0)  # untrained, it predicts 0: error 0.5
    True
    >>> verdict = job.decide()
    >>> verdict.promoted, verdict.candidate_score, verdict.serving_score, verdict.metric
    (True, 0.5, 2.0, 'mae')
    """

    metric = MAE

    def _error(self, model: Any, x: dict[Any, Any], y: Any) -> float:
        return float(abs(model.predict_one(x) - y))

    def _serving_error(self, serving: Any) -> float:
        return float(serving)


def _upgrade(state: dict[str, Any]) -> None:
    """Turn the state of a job pickled before paired decisions (one candidate, sums of
    hits or errors) into today's: one since-change contender, its test starting now."""
    evaluated = state.get("_evaluated", 0)
    contender = Contender(state.pop("candidate"), SINCE_CHANGE)
    contender.learned = state.get("trained_on", 0)
    live = contender.live
    live.evaluated = evaluated
    if "_candidate_hits" in state:
        live.error = float(evaluated - state.pop("_candidate_hits"))
        live.serving_error = float(evaluated - state.pop("_serving_hits"))
    else:
        live.error = state.pop("_candidate_error", 0.0)
        live.serving_error = state.pop("_serving_error", 0.0)
    state["contenders"] = [contender]
    state.setdefault("max_holdout_events", max(state.get("holdout_events", 300), 3000))
