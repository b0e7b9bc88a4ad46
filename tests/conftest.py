import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
