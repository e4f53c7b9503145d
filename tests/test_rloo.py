import pytest

from soarlite import rloo
from soarlite.config import OuterConfig
from soarlite.soar import held_back_note, median_student, moving_average, seed_for


def test_advantages_exact():
    # A_i = r_i - mean of the others
    assert rloo.advantages([1.0, 0.0, 0.0, 0.0]) == [1.0, -1 / 3, -1 / 3, -1 / 3]
    assert rloo.advantages([120.0, 10.0]) == [110.0, -110.0]
    assert rloo.advantages([5.0, 5.0, 5.0]) == [0.0, 0.0, 0.0]
    assert rloo.advantages([0.25, -0.125, 0.0, 0.125]) == [0.25 - 0.0 / 3, -0.125 - 0.375 / 3, 0.0 - 0.25 / 3, 0.125 - 0.125 / 3]


def test_advantages_sum_to_zero():
    a = rloo.advantages([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    assert abs(sum(a)) < 1e-12


def test_advantages_need_a_group():
    with pytest.raises(ValueError):
        rloo.advantages([1.0])


def test_moving_average_needs_a_full_window():
    assert moving_average([0.02], 3) is None
    assert moving_average([0.02, 0.0, 0.01], 3) == pytest.approx(0.01)
    assert moving_average([1.0, 0.03, 0.0, 0.03], 3) == pytest.approx(0.02)
    assert moving_average([0.5], 1) == 0.5


def test_median_student_is_the_upper_median_unless_asked():
    assert median_student([0.1, 0.3, 0.2]) == 2 == median_student([0.1, 0.3, 0.2], upper=False)  # odd: the median
    assert median_student([0.4, 0.1, 0.3, 0.2]) == 2  # sorted gains 0.1, 0.2, 0.3, 0.4: the upper median is 0.3
    assert median_student([0.4, 0.1, 0.3, 0.2], upper=False) == 3  # the lower median is 0.2
    assert median_student([0.0, 0.5]) == 1 and median_student([0.0, 0.5], upper=False) == 0  # r=2: the better one
    assert median_student([0.0]) == 0
    assert median_student([0.1, 0.1]) == 1 and median_student([0.1, 0.1], upper=False) == 0  # ties: by index


def test_held_back_note_says_when_promotion_starts_or_that_it_never_does():
    assert held_back_note(OuterConfig(steps=100, promote_from=0), 0) is None  # the paper's loop: nothing to say
    assert held_back_note(OuterConfig(steps=100, promote_from=70), 70) is None  # resumed past it
    assert held_back_note(OuterConfig(steps=100, promote_from=70), 12) == (
        "promotion held back until outer step 71 (outer.promote_from): the teacher first learns against the "
        "untrained student")
    assert held_back_note(OuterConfig(steps=12, promote_from=70), 0) == (
        "no promotion in this run: outer.promote_from (70) >= outer.steps (12)")


def test_seed_for_is_stable():
    assert seed_for(0, 3) == seed_for(0, 3)
    assert seed_for(0, 3) != seed_for(0, 4)
    assert 0 <= seed_for("x") < 2**31
