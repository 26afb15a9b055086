from dashboard.shell.params import choice_param, int_param


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


def test_str_param_and_markdown_safety():
    from dashboard.shell.params import md_code, str_param

    assert str_param({}, "view", ["a", "b"], "a") == ("a", None)
    assert str_param({"view": "b"}, "view", ["a", "b"], "a") == ("b", None)
    v, msg = str_param({"view": "x` [link](http://e.vil) `"}, "view", ["a", "b"], "a")
    assert v == "a" and msg.count("`") == 2 and "[link]" in msg  # the value cannot close the code span
    assert md_code("a`b") == "a'b"
    _, msg = int_param({"layer": "`**x**`"}, "layer", 3, 0, 29)
    assert msg.count("`") == 2
