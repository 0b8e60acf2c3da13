"""Flow's failures are specific errors that name the event or the batch (no bare RuntimeError)."""

from __future__ import annotations

import thunderline.runtime as tl
from thunderline.domains.flow import BatchFailedError, SagaNotSucceededError


def test_saga_not_succeeded_names_the_event_and_outcome() -> None:
    error = SagaNotSucceededError("e-1", "halted")
    assert isinstance(error, tl.ThunderlineError)
    assert not isinstance(error, RuntimeError)
    assert (error.event_id, error.outcome) == ("e-1", "halted")
    assert str(error) == "saga for event e-1 ended with 'halted'"


def test_batch_failed_counts_and_shows_the_first_reasons() -> None:
    reasons = ["boom", "bang", "pop", "fizz"]
    error = BatchFailedError("sagas", reasons, 16)
    assert isinstance(error, tl.ThunderlineError)
    assert error.failures == tuple(reasons)
    assert error.total == 16
    assert str(error) == "4 of 16 sagas failed: ['boom', 'bang', 'pop']"
