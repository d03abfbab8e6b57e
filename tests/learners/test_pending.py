"""The pending store: bounded by age and count, every label counted by what became of it,
and picklable with what it holds (it is part of the checkpoint)."""

from __future__ import annotations

import pickle

import pytest

from learners.pending import REMEMBER_AT_LEAST, PendingLabels


def _fill(store: PendingLabels, ids: range, at: float = 0.0) -> None:
    for i in ids:
        store.add(str(i), {"x": float(i)}, i % 2 == 0, 1, at=at + i, offset=i)


def test_a_label_joins_once_then_is_a_duplicate() -> None:
    store = PendingLabels()
    _fill(store, range(3))
    entry = store.take("1", at=10.0)
    assert entry is not None
    assert (entry.features, entry.prediction, entry.model_version, entry.offset) == (
        {"x": 1.0}, False, 1, 1,
    )  # fmt: skip
    assert store.take("1", at=11.0) is None
    assert (store.joined, store.duplicate, store.unknown, store.expired) == (1, 1, 0, 0)
    assert store.drain_delays() == [9.0] and store.delays == []
    assert len(store) == 2


def test_an_id_never_seen_is_unknown() -> None:
    store = PendingLabels()
    assert store.take("nope", at=0.0) is None
    assert (store.unknown, store.joined) == (1, 0)


def test_the_oldest_beyond_max_pending_are_dropped_and_their_labels_expire() -> None:
    store = PendingLabels(max_pending=10)
    _fill(store, range(25))
    assert len(store) == 10
    assert "14" not in store and "15" in store
    assert store.dropped == 15
    assert store.take("3", at=30.0) is None
    assert store.take("20", at=30.0) is not None
    assert (store.expired, store.joined) == (1, 1)


def test_entries_older_than_the_ttl_expire_by_record_time() -> None:
    store = PendingLabels(ttl_s=100.0)
    _fill(store, range(5))  # arrive at 0..4 s
    store.add("late", {"x": 0.0}, True, 1, at=102.5, offset=5)  # drops 0, 1 and 2
    assert [str(i) in store for i in range(5)] == [False, False, False, True, True]
    assert store.take("2", at=103.0) is None and store.expired == 1
    # A clock that goes back (records out of time order) never revives an entry.
    assert store.take("3", at=50.0) is not None
    # A label that comes after the ttl finds its entry gone even without an ``add`` first.
    assert store.take("4", at=104.5) is None and store.expired == 2


def test_replacing_a_waiting_id_keeps_the_newer_prediction() -> None:
    store = PendingLabels()
    store.add("a", {"x": 1.0}, True, 1, at=0.0, offset=0)
    store.add("a", {"x": 2.0}, False, 2, at=1.0, offset=1)
    entry = store.take("a", at=2.0)
    assert entry is not None and entry.features == {"x": 2.0} and entry.model_version == 2
    assert store.dropped == 1 and len(store) == 0


def test_what_is_remembered_of_gone_ids_is_bounded() -> None:
    store = PendingLabels(max_pending=5)
    _fill(store, range(REMEMBER_AT_LEAST + 1000))
    assert len(store._gone) == REMEMBER_AT_LEAST
    assert store.take("0", at=0.0) is None and store.unknown == 1  # forgotten long ago
    assert store.take("1000", at=0.0) is None and store.expired == 1


def test_resize_applies_new_bounds_at_once() -> None:
    store = PendingLabels(max_pending=100)
    _fill(store, range(50))
    store.resize(10, 5.0)
    assert len(store) == 10 and store.max_pending == 10 and store.ttl_s == 5.0
    with pytest.raises(ValueError):
        store.resize(0, 5.0)


def test_it_pickles_with_its_entries_and_counts() -> None:
    store = PendingLabels(max_pending=7, ttl_s=3600.0)
    _fill(store, range(9))
    store.take("8", at=9.0)
    copy: PendingLabels = pickle.loads(pickle.dumps(store))
    assert len(copy) == len(store) == 6
    assert copy.take("8", at=10.0) is None and copy.duplicate == 1
    assert copy.take("5", at=10.0) is not None and copy.joined == 2


@pytest.mark.parametrize("bad", [{"max_pending": 0}, {"ttl_s": 0.0}, {"ttl_s": float("nan")}])
def test_bad_bounds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PendingLabels(**bad)  # type: ignore[arg-type]
