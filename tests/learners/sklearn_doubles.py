"""scikit-learn estimators for the tests of fits in worker processes.

They live in an importable module because a worker unpickles them by name; they talk to
the test through files, not events: the fit runs in another process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sklearn.naive_bayes import GaussianNB

#: How long a gated fit waits for its gate: a broken test fails, never hangs.
GATE_TIMEOUT_S = 60.0


class GatedNB(GaussianNB):
    """GaussianNB whose fit waits until the file ``gate`` exists: the test decides when
    a background fit may end. Records the process that fitted it in ``fitted_in_``."""

    def __init__(self, gate: str = "", *, priors: Any = None, var_smoothing: float = 1e-9):
        super().__init__(priors=priors, var_smoothing=var_smoothing)
        self.gate = gate

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GatedNB:
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while self.gate and not Path(self.gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {self.gate} was never opened")
            time.sleep(0.01)
        super().fit(X, y, sample_weight)
        self.fitted_in_ = os.getpid()
        return self


class FailingNB(GaussianNB):
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FailingNB:
        raise ArithmeticError("the fit failed")
