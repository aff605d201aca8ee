from __future__ import annotations

import pytest
import yaml

from reidkit.config import Config, apply_overrides, load_config, save_config, to_dict
from reidkit.errors import ConfigError


def test_defaults_and_overrides_parse_yaml_values():
    config = load_config(
        None, ["train.epochs=3", "optim.lr=1e-3", "model.pretrained=null", "data.options={a: 1}"]
    )
    assert config.train.epochs == 3
    assert config.optim.lr == pytest.approx(1e-3) and isinstance(config.optim.lr, float)
    assert config.model.pretrained is None
    assert config.data.options == {"a": 1}


def test_yaml_file_round_trip(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": {"backbone": "resnet18"}, "train": {"epochs": 5}}))
    config = load_config(path, ["train.epochs=7"])
    assert config.model.backbone == "resnet18" and config.train.epochs == 7
    save_config(config, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert to_dict(again) == to_dict(config)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.bakbone=resnet18", "unknown config key model.bakbone"),
        ("trian.epochs=3", "unknown config section 'trian'"),
        ("train.epochs=abc", "train.epochs expects int"),
        ("train.epochs=2.5", "train.epochs expects int"),
        ("model.pretrained=3", "model.pretrained expects str or null"),
        ("optim.name=rmsprop", "optim.name must be sgd, adam or adamw"),
        ("data.flip=1.5", "data.flip is a probability"),
        ("eval.rerank=slow", "eval.rerank must be null, exact or fast"),
        ("train.amp=yes please", "train.amp expects bool"),
        ("loss.terms=[]", "loss.terms must be a non-empty list"),
        ("noequals", "must look like section.key=value"),
        ("epochs=3", "must name section.key"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  nmae: pcb\n")
    with pytest.raises(ConfigError, match=r"model.nmae.*typo.yaml"):
        load_config(typo)


def test_overrides_do_not_mutate_input():
    values = {"train": {"epochs": 1}}
    result = apply_overrides(values, ["train.epochs=2"])
    assert values == {"train": {"epochs": 1}} and result == {"train": {"epochs": 2}}
    assert isinstance(Config(), Config)


def test_yaml_reads_on_as_a_string_and_exponents_as_floats(tmp_path):
    from reidkit.config import yaml_load

    assert yaml_load("a: on\nb: yes\nc: true\nd: 1e-3\ne: 5\nf: -2E+2") == {
        "a": "on",
        "b": "yes",
        "c": True,
        "d": 0.001,
        "e": 5,
        "f": -200.0,
    }
    recipe = tmp_path / "r.yaml"
    recipe.write_text("loss:\n  terms:\n    - {name: trihard, on: global, params: {margin: 3e-1}}\n")
    term = load_config(recipe).loss.terms[0]
    assert term["on"] == "global" and term["params"]["margin"] == 0.3
    save_config(load_config(recipe), tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml").loss.terms[0]["on"] == "global"
