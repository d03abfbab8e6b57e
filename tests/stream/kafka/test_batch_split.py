"""How BatchProducer cuts a shipment into record batches the broker accepts."""

from __future__ import annotations

from stream.kafka.batch_producer import MAX_BATCH_BYTES, _split
from stream.kafka.record_batch import BatchRecord, encode_batch


def test_runs_stay_under_the_batch_limit_even_with_large_headers() -> None:
    # Dead letters: small values, headers several times their size.
    headers = [("streamlearn.detail", b"d" * 400), ("streamlearn.reason", b"bad_feature")]
    records: list[BatchRecord] = [(b"k%d" % i, b"v" * 50, headers, 0) for i in range(10_000)]
    runs = _split(records, MAX_BATCH_BYTES)
    assert [r for run, _ in runs for r in run] == records  # all of them, in order
    assert len(runs) > 1
    for run, estimate in runs:
        encoded = len(encode_batch(run))
        assert encoded <= estimate + 61 <= MAX_BATCH_BYTES + 61


def test_a_record_bigger_than_the_limit_goes_alone() -> None:
    big = b"x" * (MAX_BATCH_BYTES + 1)
    records: list[BatchRecord] = [(None, v, None, 0) for v in (b"a", big, b"b")]
    assert [len(run) for run, _ in _split(records, MAX_BATCH_BYTES)] == [1, 1, 1]
