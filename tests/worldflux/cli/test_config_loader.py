"""The strict worldflux.toml loader: property tests over keys and values, and the scaffold round trip."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldflux.cli.scaffold import render_toml
from worldflux.config_loader import SCHEMA, ProjectConfigError, json_schema, parse_config

SECTIONS = [s for s in SCHEMA if s]
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(section=st.sampled_from(SECTIONS), key=names)
def test_unknown_section_keys_fail_naming_key_and_allowed(section: str, key: str) -> None:
    if key in SCHEMA[section]:
        return
    with pytest.raises(ProjectConfigError) as info:
        parse_config({"model": "tdmpc2:ci", section: {key: 1}})
    assert f"'{section}.{key}'" in str(info.value)
    assert all(allowed in str(info.value) for allowed in SCHEMA[section])


@settings(max_examples=25, deadline=None)
@given(key=names)
def test_unknown_top_level_keys_and_sections_fail(key: str) -> None:
    if key in SCHEMA[""] or key in SCHEMA:
        return
    with pytest.raises(ProjectConfigError, match="Unknown top-level key"):
        parse_config({key: "x"})
    with pytest.raises(ProjectConfigError, match=r"Unknown section \["):
        parse_config({key: {"a": 1}})


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(min_value=-10, max_value=10**9), lr=st.floats(allow_nan=True, allow_infinity=True),
       enabled=st.one_of(st.booleans(), st.integers(0, 1), st.text(max_size=3)))
def test_values_are_checked_with_the_section_key_name(steps: int, lr: float, enabled: object) -> None:
    data = {"training": {"total_steps": steps, "learning_rate": lr}, "gameplay": {"enabled": enabled}}
    try:
        config = parse_config(data)
    except ProjectConfigError as exc:
        text = str(exc)
        assert any(name in text for name in ("training.total_steps", "training.learning_rate", "gameplay.enabled"))
        bad_steps, bad_lr = steps < 1, not (lr > 0 and lr < float("inf"))
        assert bad_steps or bad_lr or not isinstance(enabled, bool)
    else:
        assert steps >= 1 and lr > 0 and isinstance(enabled, bool)
        assert config["training"]["total_steps"] == steps and config["gameplay"]["enabled"] is enabled


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 10**7), port=st.integers(0, 65535), name=st.text(max_size=20),
       shape=st.lists(st.integers(1, 64), min_size=1, max_size=3), source=st.sampled_from(["random", "gym"]))
def test_scaffold_text_round_trips_through_the_loader(steps: int, port: int, name: str, shape: list[int],
                                                      source: str) -> None:
    values = {"": {"project_name": name, "environment": "CartPole-v1", "model": "dreamer:ci"},
              "training": {"total_steps": steps}, "visualization": {"port": port},
              "architecture": {"obs_shape": shape}, "data": {"source": source}}
    config = parse_config(tomllib.loads(render_toml(values)))
    assert config[""]["project_name"] == name and config.family == "dreamer"
    assert config["training"]["total_steps"] == steps and config["visualization"]["port"] == port
    assert config["architecture"]["obs_shape"] == shape and config.env_id == "CartPole-v1"


def test_defaults_follow_the_reference_and_schema_lists_every_key() -> None:
    config = parse_config({})
    assert config.model == "tdmpc2:ci" and config.family == "tdmpc2"
    assert config["training"]["total_steps"] == 100_000 and config["training"]["output_dir"] == "./outputs"
    assert config["visualization"]["port"] == 8765 and config["inference"]["horizon"] == 15
    schema = json_schema()
    for section in SECTIONS:
        assert set(schema["properties"][section]["properties"]) == set(SCHEMA[section])
    with pytest.raises(ProjectConfigError, match="does not match model"):
        parse_config({"model": "tdmpc2:ci", "model_type": "dreamer"})


@pytest.mark.parametrize(("discrete", "gradient"), [(True, "reinforce"), (False, "dynamics")])
def test_online_agent_models_get_the_learning_behaviour_settings(discrete: bool, gradient: str) -> None:
    from worldflux.cli.project import build_model

    project = parse_config({"model": "dreamerv3:ci", "architecture": {"hidden_dim": 16}})
    model = build_model(project, (4,), 2, agent=True, discrete=discrete)
    cfg = model.config
    assert (cfg.actor_critic, cfg.behavior_profile, cfg.actor_gradient) == (True, "paper", gradient)
    assert cfg.replay_critic == 0.3
    plain = build_model(project, (4,), 2)
    assert (plain.config.actor_critic, plain.config.behavior_profile) == (False, "reference")
