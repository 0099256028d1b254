from hypothesis import given
from hypothesis import strategies as st

from privproc.httpfields import DELAY_MAX, delay_seconds


def test_delay_seconds() -> None:
    assert delay_seconds("0") == 0
    assert delay_seconds(b"120") == 120
    assert delay_seconds("2147483648") == DELAY_MAX
    assert delay_seconds("2147483649") == DELAY_MAX
    assert delay_seconds("9" * 5000) == DELAY_MAX  # int() would refuse over 4,300 digits
    for bad in (None, "", " 5", "5 ", "+5", "-5", "5.0", "0x10", "\xb2", b"\xb2", "\u0663",
                "Tue, 01 Jan 2030 00:00:00 GMT"):
        assert delay_seconds(bad) is None


@given(st.one_of(st.text(), st.binary()))
def test_delay_seconds_never_raises(value: str | bytes) -> None:
    seconds = delay_seconds(value)
    assert seconds is None or 0 <= seconds <= DELAY_MAX
