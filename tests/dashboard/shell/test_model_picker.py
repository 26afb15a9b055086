"""frame.model_picker, the model pages' one model chooser: the model and a second one beside it, both in the URL
(`model=`, `compare=`), keyed by the page's prefix; bad params fall back with a warning."""

from streamlit.testing.v1 import AppTest


def picker_app():
    import streamlit as st

    from dashboard.shell import frame

    st.text(",".join(frame.model_picker("demo", ["a", "b", "c"], compare_default="c")))


def run(**params):
    at = AppTest.from_function(picker_app, default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_defaults_and_url():
    at = run()
    assert not at.exception and at.text[0].value == "a,c" and at.query_params["compare"] == "c"
    at = run(model="b", compare="none")
    assert at.text[0].value == "b" and at.selectbox(key="demo_model").value == "b"
    at.selectbox(key="demo_compare").select("a").run()
    assert at.text[0].value == "b,a" and at.query_params["compare"] == "a"


def test_bad_params_fall_back_with_a_warning():
    at = run(model="zzz", compare="a")  # the compare default is the model itself: not offered beside it
    assert at.text[0].value == "a,c" and len(at.warning) == 2
