"""What every chapter module shares: parameters read once from the page, values glued by name."""

from __future__ import annotations

import pytest

from lmconv import params
from lmconv.errors import LmconvError


def test_from_namespace_validates_the_registered_names_only():
    ns = {"profile": "smoke", "sizes": None, "sosd_window": 3, "np": object(), "helper": 1}
    p = params.from_namespace(ns)
    assert vars(p) == {"profile": "smoke", "sizes": None, "sosd_window": 3}
    with pytest.raises(LmconvError, match="sosd_window"):
        params.from_namespace({**ns, "sosd_window": -1})
