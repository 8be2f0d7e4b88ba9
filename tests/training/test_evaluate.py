from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from training.evaluate import pearson, rankdata, spearman


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_and_pearson_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=200)
    b = a * 0.3 + rng.normal(size=200)
    # ties, as gold STS scores have
    b[:50] = np.round(b[:50])
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_rankdata_averages_ties() -> None:
    assert rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
