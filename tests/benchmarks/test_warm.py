"""The Lambda prices benchmarks/warm.py bills its measured durations at: each architecture's
public GB-second price, the same request price, and the rounding up to the millisecond."""
import pytest

from benchmarks.warm import PRICE_GB_SECOND, PRICE_REQUEST, cost_per_1000


@pytest.mark.parametrize("architecture, per_gb_second", [("x86_64", 0.0000166667),
                                                         ("arm64", 0.0000133334)])
def test_a_thousand_one_gb_requests_of_a_second_cost_the_gb_second_price_plus_requests(
        architecture, per_gb_second):
    assert cost_per_1000(1024, 1000.0, architecture) == pytest.approx(
        1000 * (per_gb_second + PRICE_REQUEST))


def test_arm64_is_a_fifth_cheaper_per_gb_second_and_requests_cost_the_same():
    assert PRICE_GB_SECOND["arm64"] / PRICE_GB_SECOND["x86_64"] == pytest.approx(0.8, abs=1e-5)
    # at the same duration only the duration part differs
    x86, arm64 = cost_per_1000(3538, 33.0), cost_per_1000(3538, 33.0, "arm64")
    duration_x86 = x86 - 1000 * PRICE_REQUEST
    assert arm64 - 1000 * PRICE_REQUEST == pytest.approx(0.8 * duration_x86, rel=1e-4)


def test_durations_are_billed_rounded_up_to_the_millisecond():
    assert cost_per_1000(1769, 32.01, "arm64") == cost_per_1000(1769, 33.0, "arm64")
    assert cost_per_1000(1769, 33.0) < cost_per_1000(1769, 33.01)
