"""The config is the CLI: every command's flags, defaults and help come from its config dataclass."""

from dataclasses import MISSING, fields

import pytest

from core.cli.args import field_docs
from core.cli.main import RunsQuery, TopQuery, build_parser
from core.cli.serve import ServeConfig
from core.demo import DemoConfig
from core.heads.config import HeadsConfig
from core.lens.query import LensQuery
from core.lens.tuned import TunedLensConfig
from core.units.config import ExtractConfig

COMMANDS = {"extract": ExtractConfig, "train-lens": TunedLensConfig, "heads": HeadsConfig, "lens": LensQuery,
            "demo": DemoConfig, "serve": ServeConfig, "top": TopQuery, "runs": RunsQuery}


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_every_field_is_a_documented_flag_with_the_dataclass_default(cmd):
    cls = COMMANDS[cmd]
    docs = field_docs(cls)
    sub = build_parser()._subparsers._group_actions[0].choices[cmd]
    actions = {a.dest: a for a in sub._actions}
    for f in fields(cls):
        assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
        if cmd == "demo" and f.name == "serve":
            continue  # --no-serve
        a = actions[f.name]
        assert a.help.startswith(docs[f.name].replace("%", "%%"))  # argparse reads % as a format
        if f.default is MISSING and f.default_factory is MISSING:
            assert a.required
        elif f.default_factory is MISSING and a.default is not None:
            assert a.default == f.default


def test_flags_parse_into_the_config():
    from core.cli.args import config_from

    a = build_parser().parse_args(["extract", "--model", "m", "--db", "x.duckdb", "--layers", "0-3", "--top-k", "5",
                                   "--include-special"])
    cfg = config_from(a, ExtractConfig)
    assert (cfg.model, cfg.layers, cfg.top_k, cfg.include_special, cfg.max_tokens) == ("m", "0-3", 5, True, 100_000)
    a = build_parser().parse_args(["demo", "--models", "a,b", "--models", "c"])
    assert config_from(a, DemoConfig).models == ["a", "b", "c"]
    assert config_from(build_parser().parse_args(["demo"]), DemoConfig).models == DemoConfig().models
    a = build_parser().parse_args(["lens", "--model", "m", "--prompt", "p", "--lens", "tuned"])
    assert config_from(a, LensQuery).lens == "tuned"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lens", "--model", "m", "--prompt", "p", "--lens", "nope"])


def test_every_command_prints_its_help(capsys):
    """Every command's --help renders (a '%' in a field's docstring once broke argparse's formatting)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "cmd").choices
    for name in commands:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0, name
    assert "98%" in capsys.readouterr().out  # DemoConfig.sae_lr's docstring, shown as written
