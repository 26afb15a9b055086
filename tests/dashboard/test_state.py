from dashboard.state import choice_param, int_param


def test_int_param_fallbacks():
    assert int_param({}, "layer", 3, 0, 29) == (3, None)
    assert int_param({"layer": "7"}, "layer", 3, 0, 29) == (7, None)
    v, msg = int_param({"layer": "99"}, "layer", 3, 0, 29)
    assert v == 3 and "out of range" in msg
    v, msg = int_param({"layer": "<script>"}, "layer", 3, 0, 29)
    assert v == 3 and "not a number" in msg


def test_choice_param():
    assert choice_param({"run": "2"}, "run", [1, 2, 5], 1) == (2, None)
    v, msg = choice_param({"run": "3"}, "run", [1, 2, 5], 1)
    assert v == 1 and "not in this index" in msg
