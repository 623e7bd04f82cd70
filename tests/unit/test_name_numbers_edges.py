"""`NAME=NUMBER` option values at their edges: a number alone needs `bare`, and a second `=` is part of
the number (refused) unless a number alone is allowed, where it is part of the name."""

from __future__ import annotations

import pytest

from harness.keyvalues import name_numbers


def test_a_number_alone_is_refused_unless_bare_is_asked_for() -> None:
    with pytest.raises(ValueError) as e:
        name_numbers(["2.5"])
    assert e.value.args == ("2.5",)


def test_a_second_equals_sign_splits_at_the_first_without_bare_and_at_the_last_with_it() -> None:
    with pytest.raises(ValueError) as e:
        name_numbers(["h100=sxm=2.5"])
    assert e.value.args == ("h100=sxm=2.5",)
    assert name_numbers(["h100=sxm=2.5"], bare=True) == {"h100=sxm": 2.5}
