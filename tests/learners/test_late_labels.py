"""Labels that come later, in the learner: exact against River's delayed progressive
validation, predicting leaves no trace, stale predictions stay away from ADWIN, and the
journal undoes a label the model raised on like any poison event."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from river import base, datasets, evaluate, linear_model, metrics, preprocessing, tree

from learners.checkpoint import decode_checkpoint, encode_checkpoint
from learners.journal import Journal, Kept, redo
from learners.prequential import PartitionLearner
from learners.state import PartitionState, SequenceTracker
from stream.tools.generators import concept_stream

Pair = tuple[dict[str, Any], Any]

MODELS: dict[str, Callable[[], base.Classifier]] = {
    "scaler-lr": lambda: cast(
        base.Classifier, preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "tree": lambda: cast(base.Classifier, tree.HoeffdingTreeClassifier(grace_period=50)),
}


def delayed(pairs: list[Pair], delay: int) -> Iterator[Kept]:
    """The ops the daemon performs when each label comes exactly ``delay`` records after its
    event: before event i, the label of event i - delay; the last labels close the stream."""
    for i, (x, _) in enumerate(pairs):
        if i >= delay:
            yield (None, str(i - delay), pairs[i - delay][1], float(i), 2 * i)
        yield (x, str(i), float(i), 2 * i + 1)
    for j in range(max(len(pairs) - delay, 0), len(pairs)):
        yield (None, str(j), pairs[j][1], float(len(pairs)), 2 * len(pairs) + j)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("delay", [1, 100, 1000])
def test_cumulative_accuracy_equals_progressive_val_score_with_delay(
    model: str, delay: int
) -> None:
    pairs: list[Pair] = list(datasets.Phishing())
    learner = PartitionLearner(MODELS[model](), drift_action="none")
    for op in delayed(pairs, delay):
        redo(learner, op)
    expected = evaluate.progressive_val_score(
        pairs, MODELS[model](), metrics.Accuracy(), delay=delay
    )
    assert learner.cumulative.get() == pytest.approx(expected.get(), abs=1e-12, rel=0)
    assert learner.learned == learner.predicted == len(pairs)
    assert learner.pending is not None
    assert learner.pending.joined == len(pairs) and len(learner.pending) == 0


def test_predictions_that_expire_unlabelled_leave_no_trace_in_the_model() -> None:
    """Holding events (new feature names among them) and never labelling them changes
    nothing: the learner predicts and learns afterwards exactly as one that never saw them."""
    pairs = list(concept_stream("agrawal", seed=5, count=1500))
    held = [({**x, "unseen": 1.0}, y) for x, y in pairs[200:500]]
    with_holds = PartitionLearner(MODELS["scaler-lr"](), max_pending=50)
    without = PartitionLearner(MODELS["scaler-lr"]())
    for offset, (x, y) in enumerate(pairs[:200]):
        with_holds.step(x, y, offset)
        without.step(x, y, offset)
    before = pickle.dumps(with_holds.model)
    for offset, (x, _) in enumerate(held[:100]):
        if "unseen" in x:
            x = {k: v for k, v in x.items() if k != "unseen"}
        with_holds.hold(x, f"h{offset}", 0.0, 200 + offset)
    assert pickle.dumps(with_holds.model) == before  # known names: not a byte changes
    for offset, (x, _) in enumerate(held[100:]):
        with_holds.hold(x, f"n{offset}", 0.0, 300 + offset)
    assert with_holds.pending is not None and len(with_holds.pending) == 50
    for offset, (x, y) in enumerate(pairs[500:], start=500):
        assert with_holds.step(x, y, offset) == without.step(x, y, offset)
    assert with_holds.cumulative.get() == without.cumulative.get()


def test_a_prediction_of_a_replaced_model_is_scored_but_not_shown_to_adwin() -> None:
    learner = PartitionLearner(MODELS["scaler-lr"](), drift_action="reset")
    pairs = list(concept_stream("sea", seed=2, count=300))
    for offset, (x, y) in enumerate(pairs[:200]):
        learner.step(x, y, offset)
    x, y = pairs[200]
    learner.hold(x, "old", 0.0, 200)
    learner._replace_model(learner.fresh_model())  # as a reset does
    width, total = learner.detector.width, learner.cumulative.total
    assert learner.join("old", y, 1.0, 201)
    assert learner.detector.width == width  # the new model's detector never saw it
    assert learner.cumulative.total == total + 1 and learner.learned == 201
    learner.hold(x, "new", 2.0, 202)
    assert learner.join("new", y, 3.0, 203)
    assert learner.detector.width == width + 1


def test_a_label_for_an_event_the_learner_never_held_is_not_learned() -> None:
    learner = PartitionLearner(MODELS["scaler-lr"]())
    assert not learner.join("ghost", True, 0.0, 0)
    assert learner.learned == 0 and learner.pending is not None and learner.pending.unknown == 1


def test_a_learner_pickled_before_late_labels_holds_once_restored() -> None:
    learner = PartitionLearner(MODELS["scaler-lr"]())
    del learner.__dict__["pending"]  # what a checkpoint from before this feature restores
    restored: PartitionLearner = pickle.loads(pickle.dumps(learner))
    assert restored.pending is None
    assert not restored.join("a", True, 0.0, 0)
    restored.hold({"x": 1.0}, "a", 0.0, 1)
    assert restored.join("a", True, 1.0, 2) and restored.learned == 1


def test_the_journal_undoes_a_label_the_model_raised_on() -> None:
    """A late label LogisticRegression cannot read ('cat') makes learn_one raise after the
    scaler learned the features: the rebuilt learner is the one that never saw that label
    (its event still waits), and the holds and joins around it are redone exactly."""
    pairs = list(concept_stream("sea", seed=9, count=600))
    ops = list(delayed(pairs, 40))
    poison = {i for i, op in enumerate(ops) if len(op) == 5 and op[1] in {"17", "300", "301"}}
    ops = [(*op[:2], "cat", *op[3:]) if i in poison else op for i, op in enumerate(ops)]
    learner = PartitionLearner(MODELS["scaler-lr"]())
    journal = Journal(learner, every=97)
    predictions = []
    for op in ops:
        journal.kept.append(op)
        try:
            if len(op) == 4:
                predictions.append(learner.hold(*op))
            else:
                redo(learner, op)
        except ValueError:
            learner = journal.undo_last(learner).learner
        if journal.due:
            journal.snapshot(learner)
    reference = PartitionLearner(MODELS["scaler-lr"]())
    expected = []
    for i, op in enumerate(ops):
        if len(op) == 4:
            expected.append(reference.hold(*op))
        elif i not in poison:
            redo(reference, op)
    assert predictions == expected  # every prediction, before and after each poison label
    assert journal.skipped == {ops[i][-1] for i in poison}
    assert (learner.learned, learner.cumulative.hits) == (
        reference.learned, reference.cumulative.hits,
    )  # fmt: skip
    assert learner.learned == len(pairs) - 3
    assert learner.pending is not None and reference.pending is not None
    assert sorted(learner.pending._entries) == ["17", "300", "301"]
    for x, _ in pairs[:50]:
        assert learner.model.predict_proba_one(x) == reference.model.predict_proba_one(x)
    assert learner.detector.width == reference.detector.width


def test_waiting_predictions_survive_the_checkpoint_codec() -> None:
    """The pending store is part of the checkpointed state, through the restricted unpickler."""
    learner = PartitionLearner(MODELS["scaler-lr"]())
    pairs = list(concept_stream("sea", seed=4, count=300))
    ops = list(delayed(pairs, 100))
    for op in ops[:350]:
        redo(learner, op)
    blob = encode_checkpoint(
        PartitionState(learner, SequenceTracker()), next_offset=351, key=b"k" * 32
    )
    restored = decode_checkpoint(blob, key=b"k" * 32).state
    assert isinstance(restored, PartitionState)
    copy = restored.learner
    assert copy.pending is not None and learner.pending is not None
    assert len(copy.pending) == len(learner.pending) == 100
    for op in ops[350:]:
        redo(learner, op)
        redo(copy, op)
    assert copy.learned == learner.learned == 300
    assert copy.cumulative.hits == learner.cumulative.hits
