"""The factory API (create_world_model, get_config, list_models, get_model_info, WorldModelBuilder) and the
lazy top-level ``worldflux`` module. Models are built by fake builders registered in the test."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

import worldflux
from worldflux import factory
from worldflux.core.config import DreamerV3Config, TDMPC2Config, WorldModelConfig
from worldflux.core.exceptions import ConfigurationError
from worldflux.models import registry


@dataclass
class FakeModel:
    config: WorldModelConfig
    device: str
    api_version: str
    components: dict[str, Any] = field(default_factory=dict)

    def set_component(self, slot: str, component: Any) -> None:
        self.components[slot] = component


def fake_builder(config: WorldModelConfig, *, device: str = "cpu", api_version: str = "v3") -> FakeModel:
    return FakeModel(config, device, api_version)


@pytest.fixture
def builders(monkeypatch):
    """Registries holding only fake builders (and no lazily imported model modules)."""
    monkeypatch.setattr(registry, "MODEL_BUILDERS", {"dreamer": fake_builder, "tdmpc2": fake_builder})
    monkeypatch.setattr(registry, "PRETRAINED_LOADERS", {})
    monkeypatch.setattr(registry, "BUILTIN_MODEL_MODULES", {})
    return registry


# ---------------------------------------------------------------------------------------------------
# create_world_model: success paths
# ---------------------------------------------------------------------------------------------------


def test_vector_observations_give_an_mlp_dreamer_config(builders):
    model = factory.create_world_model("dreamerv3:size12m", obs_shape=(4,), action_dim=2)
    config = model.config
    assert type(config) is DreamerV3Config
    assert (config.obs_shape, config.action_dim) == ((4,), 2)
    assert (config.encoder_type, config.decoder_type) == ("mlp", "mlp")
    assert (config.model_name, config.deter_dim, config.hidden_dim) == ("size12m", 2048, 256)
    assert (model.device, model.api_version) == ("cpu", "v3")
    assert (model._wf_api_version, model._wf_backend, model._wf_model_id) == ("v3", "native_jax", "dreamerv3:size12m")


def test_kl_balance_is_accepted_by_the_factory(builders):
    config = factory.create_world_model("dreamerv3:size50m", obs_shape=(4,), action_dim=2, kl_balance=0.5).config
    assert config.kl_balance == 0.5
    assert config.loss_scales["kl_dynamics"] == pytest.approx(0.3)
    assert config.loss_scales["kl_representation"] == pytest.approx(0.3)


def test_guide_factory_overrides_example_runs_as_written(builders):
    from worldflux import create_world_model

    model = create_world_model(
        "dreamerv3:size12m",
        obs_shape=(3, 64, 64),
        action_dim=4,
        hidden_dim=320,
        stoch_discrete=16,
        stoch_classes=16,
    )
    config = model.config
    assert (config.hidden_dim, config.stoch_discrete, config.stoch_classes, config.stoch_dim) == (320, 16, 16, 256)
    assert (config.obs_shape, config.action_dim, config.encoder_type) == ((3, 64, 64), 4, "cnn")


@pytest.mark.parametrize(
    ("model_id", "config_cls", "model_name"),
    [
        ("dreamer:ci", DreamerV3Config, "ci"),
        ("dreamerv3:ci", DreamerV3Config, "ci"),
        ("DreamerV3:ci", DreamerV3Config, "ci"),
        ("dreamer-ci", DreamerV3Config, "ci"),
        ("DREAMER-CI", DreamerV3Config, "ci"),
        ("dreamer", DreamerV3Config, "size12m"),
        ("tdmpc2:ci", TDMPC2Config, "ci"),
        ("tdmpc:ci", TDMPC2Config, "ci"),
        ("tdmpc2-ci", TDMPC2Config, "ci"),
        ("tdmpc-proof", TDMPC2Config, "5m"),
    ],
)
def test_family_spellings_and_aliases_resolve(builders, model_id, config_cls, model_name):
    config = factory.create_world_model(model_id, obs_shape=(4,), action_dim=2).config
    assert type(config) is config_cls and config.model_name == model_name


def test_defaults_when_shapes_are_not_given(builders):
    config = factory.create_world_model("tdmpc2:ci").config
    assert (config.obs_shape, config.action_dim) == ((3, 64, 64), 6)


def test_interface_specs_and_device_reach_the_builder(builders):
    model = factory.create_world_model(
        "tdmpc2:ci",
        observation_modalities={"obs": {"shape": (5,)}},
        action_spec={"kind": "discrete", "dim": 3},
        device="cuda",
    )
    assert model.config.obs_shape == (5,)
    assert model.config.action_spec == {"kind": "discrete", "dim": 3, "discrete": True, "num_actions": 3}
    assert (model.config.action_type, model.config.action_dim, model.device) == ("discrete", 3, "cuda")


def test_hub_kwargs_and_native_backends_are_accepted(builders):
    model = factory.create_world_model("dreamer:ci", revision="main", cache_dir="/tmp", backend="native_torch")
    assert model.config.model_name == "ci"


def test_api_version_v0_2_warns_and_allows_hybrid_actions(builders):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = factory.create_world_model("tdmpc2:ci", obs_shape=(4,), action_type="hybrid", api_version="v0.2")
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("api_version='v0.2' is deprecated" in m for m in messages)
    assert any("action_type 'hybrid' is deprecated" in m for m in messages)
    assert model.api_version == "v0.2" and model.config.action_type == "hybrid"


def test_builders_without_device_parameters_get_moved_with_to(monkeypatch):
    moved: list[str] = []

    class Plain:
        def __init__(self, config: WorldModelConfig) -> None:
            self.config = config

        def to(self, device: str) -> Plain:
            moved.append(device)
            return self

    monkeypatch.setattr(registry, "MODEL_BUILDERS", {"dreamer": Plain})
    model = factory.create_world_model("dreamer:ci", device="cpu")
    assert isinstance(model, Plain) and moved == ["cpu"]


def test_component_overrides_are_applied_and_checked(builders):
    encoder = object()
    model = factory.create_world_model("dreamer:ci", component_overrides={"observation_encoder": encoder})
    assert model.components == {"observation_encoder": encoder}
    with pytest.raises(ConfigurationError, match=r"Unknown component slot\(s\) \['encoder'\]"):
        factory.create_world_model("dreamer:ci", component_overrides={"encoder": encoder})


def test_component_overrides_fall_back_to_slot_attributes(monkeypatch):
    class Slotted:
        observation_encoder = None
        decoder_module = None

        def __init__(self, config: WorldModelConfig) -> None:
            self.config = config

    encoder, decoder = object(), object()
    monkeypatch.setattr(registry, "MODEL_BUILDERS", {"dreamer": Slotted})
    model = factory.create_world_model(
        "dreamer:ci", component_overrides={"observation_encoder": encoder, "decoder": decoder}
    )
    assert model.observation_encoder is encoder and model.decoder_module is decoder
    with pytest.raises(ConfigurationError, match="does not accept component overrides for slot 'rollout_engine'"):
        factory.create_world_model("dreamer:ci", component_overrides={"rollout_engine": object()})


def test_model_validation_failures_become_configuration_errors(monkeypatch):
    class Invalid:
        def __init__(self, config: WorldModelConfig) -> None:
            self.config = config

        def validate(self, raise_on_error: bool = False) -> None:
            raise ValueError("decoder does not match the contract")

    monkeypatch.setattr(registry, "MODEL_BUILDERS", {"dreamer": Invalid})
    with pytest.raises(ConfigurationError, match="Component validation failed: decoder does not match"):
        factory.create_world_model("dreamer:ci")


# ---------------------------------------------------------------------------------------------------
# create_world_model: errors
# ---------------------------------------------------------------------------------------------------


def test_unknown_kwarg_names_the_class_and_suggests_close_fields(builders):
    with pytest.raises(ConfigurationError) as info:
        factory.create_world_model("dreamerv3:size12m", reward_bin_mi=-10.0)
    assert str(info.value) == (
        "Unknown parameter 'reward_bin_mi' for DreamerV3Config. Did you mean: reward_bin_max, reward_bin_min?"
    )
    assert info.value.error_code == "WF-C001"
    with pytest.raises(ConfigurationError) as info:
        factory.create_world_model("tdmpc2:5m", horizn=3)
    assert str(info.value) == "Unknown parameter 'horizn' for TDMPC2Config. Did you mean: horizon?"
    with pytest.raises(ConfigurationError) as info:
        factory.create_world_model("tdmpc2:5m", encoder_type="mlp")
    assert str(info.value) == "Unknown parameter 'encoder_type' for TDMPC2Config."


def test_bad_api_version_and_hybrid_actions_under_v3():
    with pytest.raises(ValueError, match=r"^Unsupported api_version: v2\. Expected 'v0\.2' or 'v3'\.$"):
        factory.create_world_model("dreamer:ci", api_version="v2")
    message = r"^action kind 'hybrid' is not supported when api_version='v3'\.$"
    with pytest.raises(ValueError, match=message):
        factory.create_world_model("dreamer:ci", action_spec={"kind": "hybrid", "dim": 2})
    with pytest.raises(ValueError, match=message):
        factory.create_world_model("dreamer:ci", action_type="hybrid")


def test_unknown_family_bare_name_and_size():
    with pytest.raises(ValueError, match=r"^Unknown model type: foo\. Available: \['dreamer', 'tdmpc2', 'jepa'"):
        factory.create_world_model("foo:bar")
    with pytest.raises(ValueError) as info:
        factory.create_world_model("not-a-model")
    assert str(info.value) == (
        "Unknown model 'not-a-model'. Available model types: dreamer, tdmpc2, jepa, vjepa2, token, diffusion, dit, "
        "ssm, renderer3d, physics, gan. Format: 'type:size' (e.g. 'dreamerv3:size12m')"
    )
    with pytest.raises(ValueError, match=r"^Unknown size: size1m\. Available: \['ci', 'size12m'"):
        factory.create_world_model("dreamerv3:size1m")


def test_unregistered_model_types_raise_a_clear_error(monkeypatch):
    monkeypatch.setattr(registry, "MODEL_BUILDERS", {"tdmpc2": fake_builder})
    monkeypatch.setattr(registry, "BUILTIN_MODEL_MODULES", {})
    with pytest.raises(ConfigurationError) as info:
        factory.create_world_model("dreamer:ci")
    assert "model_type 'dreamer'" in str(info.value)
    assert "Registered model types: ['tdmpc2']" in str(info.value)
    with pytest.raises(ConfigurationError, match="'dit' is a skeleton family") as info:
        factory.create_world_model("dit:base")
    assert "Closest buildable families: ['diffusion', 'token']" in str(info.value)


def test_unknown_backends_are_refused(builders):
    with pytest.raises(ValueError, match="does not provide"):
        factory.create_world_model("dreamerv3:official_xl", backend="official_dreamerv3_jax_subprocess")
    with pytest.raises(ValueError, match=r"Unknown backend: 'magic'"):
        factory.create_world_model("dreamer:ci", backend="magic")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": ""}, "device must be a non-empty str"),
        ({"action_spec": [("kind", "continuous")]}, "action_spec must be a dict"),
        ({"observation_modalities": "obs"}, "observation_modalities must be a dict"),
        ({"hidden_dim": 0}, "hidden_dim must be positive"),
    ],
)
def test_invalid_arguments_raise_configuration_errors(builders, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        factory.create_world_model("dreamer:ci", **kwargs)


# ---------------------------------------------------------------------------------------------------
# create_world_model: saved model directories
# ---------------------------------------------------------------------------------------------------


def test_local_directories_go_to_the_pretrained_loader(builders, tmp_path):
    DreamerV3Config.from_size("ci", obs_shape=(4,), action_dim=2).save(tmp_path / "config.json")
    calls: list[tuple[str, str]] = []

    @registry.register_pretrained_loader("dreamer")
    def load(path: str, *, device: str = "cpu") -> FakeModel:
        calls.append((path, device))
        return FakeModel(WorldModelConfig.load(path), device, "v3")

    model = factory.create_world_model(str(tmp_path), obs_shape=(4,), action_dim=2)
    assert calls == [(str(tmp_path), "cpu")]
    assert type(model.config) is DreamerV3Config and model.config.obs_shape == (4,)
    with pytest.raises(ConfigurationError, match=r"Cannot change \['action_dim', 'action_spec'\]"):
        factory.create_world_model(str(tmp_path), action_dim=3)
    with pytest.raises(ConfigurationError, match="Unknown parameter 'horizon' for DreamerV3Config"):
        factory.create_world_model(str(tmp_path), horizon=3)


def test_local_directories_without_a_loader_raise(builders, tmp_path):
    TDMPC2Config.from_size("ci", obs_shape=(4,)).save(tmp_path / "config.json")
    with pytest.raises(ConfigurationError, match=r"No pretrained loader is registered for model_type 'tdmpc2'"):
        factory.create_world_model(tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        factory.create_world_model(str(tmp_path / "config.json"))


def test_registering_a_second_builder_for_a_type_is_refused(builders):
    with pytest.raises(ConfigurationError, match="already has a model builder"):
        registry.register_model("dreamer")(FakeModel)
    assert registry.register_model("dreamer")(fake_builder) is fake_builder  # same object: no-op


# ---------------------------------------------------------------------------------------------------
# Aliases, catalog, list_models, get_model_info, get_config
# ---------------------------------------------------------------------------------------------------


def test_aliases_match_the_reference_table():
    expected = {
        "dreamer": "dreamerv3:size12m",
        "dreamer-ci": "dreamer:ci",
        "dreamerv3": "dreamerv3:size12m",
        "dreamer-small": "dreamerv3:size12m",
        "dreamer-medium": "dreamerv3:size50m",
        "dreamer-large": "dreamerv3:size200m",
        "dreamerv3:official": "dreamerv3:official_xl",
        "tdmpc": "tdmpc2:5m",
        "tdmpc2-ci": "tdmpc2:ci",
        "tdmpc2": "tdmpc2:5m",
        "tdmpc-small": "tdmpc2:5m",
        "tdmpc-proof": "tdmpc2:proof_5m",
        "tdmpc2:proof": "tdmpc2:proof_5m",
        "tdmpc-legacy": "tdmpc2:5m_legacy",
        "tdmpc-medium": "tdmpc2:48m",
        "tdmpc-large": "tdmpc2:317m",
        "jepa": "jepa:base",
        "vjepa2": "vjepa2:base",
        "v-jepa2": "vjepa2:base",
        "token": "token:base",
        "diffusion": "diffusion:base",
        **{name: f"{name}:base" for name in ("dit", "ssm", "renderer3d", "physics", "gan")},
    }
    assert worldflux.MODEL_ALIASES == expected
    for alias, target in expected.items():
        assert factory.resolve_alias(alias.upper()) == target
        assert factory.get_model_info(alias)["model_id"] == target


def test_catalog_entries_have_the_documented_keys_and_support_tiers():
    catalog = worldflux.MODEL_CATALOG
    assert list(catalog)[:7] == [
        "dreamer:ci",
        "dreamerv3:size12m",
        "dreamerv3:size25m",
        "dreamerv3:size50m",
        "dreamerv3:size100m",
        "dreamerv3:size200m",
        "dreamerv3:official_xl",
    ]
    for info in catalog.values():
        assert {"description", "params", "type", "default_obs", "maturity", "parity_role", "support_tier"} <= set(info)
    tiers = {key: info["support_tier"] for key, info in catalog.items()}
    assert tiers["dreamerv3:official_xl"] == tiers["tdmpc2:proof_5m"] == "advanced"
    assert tiers["dreamer:ci"] == tiers["tdmpc2:19m"] == "supported"
    assert tiers["jepa:base"] == tiers["vjepa2:ci"] == "experimental"
    assert tiers["dit:base"] == tiers["gan:base"] == "internal"
    assert catalog["tdmpc2:ci"]["parity_role"] == "ci_only"
    assert catalog["dreamerv3:size12m"]["parity_role"] == "reference_family"


def test_catalog_support_tier_normalisation_keeps_explicit_values(monkeypatch):
    monkeypatch.setattr(factory, "MODEL_CATALOG", dict(factory.MODEL_CATALOG))
    factory.register_catalog_entry("tdmpc2:tiny", {"maturity": "reference", "parity_role": "x"})
    factory.register_catalog_entry("tdmpc2:odd", {"maturity": "skeleton", "support_tier": "supported"})
    assert factory.MODEL_CATALOG["tdmpc2:tiny"]["support_tier"] == "supported"
    assert factory.MODEL_CATALOG["tdmpc2:odd"]["support_tier"] == "supported"
    assert "tdmpc2:odd" in factory.list_models()


def test_list_models_surfaces_and_maturity_filters():
    supported = factory.list_models()
    assert supported == [k for k, v in factory.MODEL_CATALOG.items() if v["support_tier"] == "supported"]
    assert "dreamer:ci" in supported and "dreamerv3:official_xl" not in supported and "jepa:base" not in supported
    public = factory.list_models(surface="public")
    assert "dreamerv3:official_xl" in public and "tdmpc2:proof_5m" in public and "jepa:base" not in public
    assert factory.list_models(surface="all") == list(factory.MODEL_CATALOG)
    assert factory.list_models(surface="all", maturity="reference_family") == factory.list_models(
        surface="all", maturity="reference"
    )
    assert factory.list_models(surface="all", maturity="experimental") == [
        "jepa:base",
        "vjepa2:ci",
        "vjepa2:tiny",
        "vjepa2:base",
        "token:base",
        "diffusion:base",
    ]
    assert factory.list_models(maturity="skeleton") == []
    verbose = factory.list_models(verbose=True)
    assert list(verbose) == supported and verbose["tdmpc2:5m"]["type"] == "tdmpc2"
    with pytest.raises(ValueError, match=r"Unknown surface: 'internal'"):
        factory.list_models(surface="internal")
    with pytest.raises(ValueError, match=r"Unknown maturity: 'stable'"):
        factory.list_models(maturity="stable")


def test_get_model_info_adds_the_id_and_alias():
    info = factory.get_model_info("dreamer-large")
    assert info["model_id"] == "dreamerv3:size200m" and info["alias"] == "dreamer-large"
    assert "alias" not in factory.get_model_info("tdmpc2:19m")
    assert factory.get_model_info("dreamer:size12m")["model_id"] == "dreamerv3:size12m"
    with pytest.raises(ValueError, match=r"^Unknown model: nope\. Available models: \['dreamer:ci'"):
        factory.get_model_info("nope")


def test_get_config_builds_the_preset_config_without_a_model():
    config = factory.get_config("dreamerv3:size12m")
    assert type(config) is DreamerV3Config and config.deter_dim == 2048
    config = factory.get_config("tdmpc2-ci", obs_shape=(100,), action_dim=3, num_q_networks=4)
    assert type(config) is TDMPC2Config
    assert (config.obs_shape, config.action_dim, config.num_q_networks) == ((100,), 3, 4)
    assert factory.get_config("dreamer", obs_shape=(4,)).encoder_type == "mlp"
    with pytest.raises(ValueError, match=r"^Invalid model format: foo\. Expected 'type:size' format"):
        factory.get_config("foo")
    with pytest.raises(ConfigurationError, match=r"Unknown parameter 'hiden_dim' for TDMPC2Config\. Did you mean"):
        factory.get_config("tdmpc2:ci", hiden_dim=3)
    with pytest.raises(ValueError, match="Unknown model type: foo"):
        factory.get_config("foo:bar")


# ---------------------------------------------------------------------------------------------------
# WorldModelBuilder
# ---------------------------------------------------------------------------------------------------


def test_builder_passes_everything_to_create_world_model(builders):
    decoder = object()
    model = (
        worldflux.WorldModelBuilder("dreamer-ci")
        .with_obs_shape((4,))
        .with_action_dim(2)
        .with_device("cuda")
        .with_api_version("v3")
        .with_config(kl_free=0.5, hidden_dim=40)
        .with_component("decoder", decoder)
        .build()
    )
    config = model.config
    assert (config.obs_shape, config.action_dim, config.kl_free, config.hidden_dim) == ((4,), 2, 0.5, 40)
    assert model.device == "cuda" and model.components == {"decoder": decoder}
    spec_model = (
        worldflux.WorldModelBuilder("tdmpc2:ci")
        .with_observation_modalities({"obs": {"shape": (6,)}})
        .with_action_spec({"kind": "discrete", "dim": 4})
        .build()
    )
    assert spec_model.config.obs_shape == (6,) and spec_model.config.action_type == "discrete"


def test_builder_reports_unknown_config_fields_at_build(builders):
    builder = worldflux.WorldModelBuilder("dreamer:ci").with_config(kl_balanc=0.5)
    with pytest.raises(ConfigurationError, match="Did you mean: kl_balance"):
        builder.build()


@pytest.mark.parametrize(
    ("setter", "value", "message"),
    [
        ("with_obs_shape", (), "obs_shape must be a non-empty tuple of positive ints"),
        ("with_obs_shape", (3, 0), "obs_shape must be a non-empty tuple of positive ints"),
        ("with_obs_shape", (3.0,), "obs_shape must be a non-empty tuple of positive ints"),
        ("with_obs_shape", 4, "obs_shape must be a non-empty tuple of positive ints"),
        ("with_action_dim", 0, "action_dim must be a positive int"),
        ("with_action_dim", True, "action_dim must be a positive int"),
        ("with_device", "", "device must be a non-empty str"),
        ("with_api_version", "v1", r"api_version must be one of \['v0.2', 'v3'\]"),
        ("with_observation_modalities", {}, "observation_modalities must be a non-empty dict"),
        ("with_action_spec", "continuous", "action_spec must be a dict"),
    ],
)
def test_builder_setters_validate_their_arguments(setter, value, message):
    with pytest.raises(ConfigurationError, match=message):
        getattr(worldflux.WorldModelBuilder("dreamer:ci"), setter)(value)


def test_builder_component_slots_and_model_are_checked():
    with pytest.raises(ConfigurationError, match=r"Unknown component slot 'encoder'"):
        worldflux.WorldModelBuilder("dreamer:ci").with_component("encoder", object())
    with pytest.raises(ConfigurationError, match="must not be None"):
        worldflux.WorldModelBuilder("dreamer:ci").with_component("decoder", None)
    with pytest.raises(ConfigurationError, match="model must be a non-empty model id"):
        worldflux.WorldModelBuilder("")


# ---------------------------------------------------------------------------------------------------
# Signatures and the lazy top-level module
# ---------------------------------------------------------------------------------------------------


def test_public_signatures_match_the_reference():
    def params(fn: Any) -> list[tuple[str, str, Any]]:
        return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]

    empty = inspect.Parameter.empty
    assert params(worldflux.create_world_model) == [
        ("model", "POSITIONAL_OR_KEYWORD", empty),
        ("obs_shape", "KEYWORD_ONLY", None),
        ("action_dim", "KEYWORD_ONLY", None),
        ("observation_modalities", "KEYWORD_ONLY", None),
        ("action_spec", "KEYWORD_ONLY", None),
        ("component_overrides", "KEYWORD_ONLY", None),
        ("device", "KEYWORD_ONLY", "cpu"),
        ("api_version", "KEYWORD_ONLY", "v3"),
        ("kwargs", "VAR_KEYWORD", empty),
    ]
    assert params(worldflux.list_models) == [
        ("verbose", "POSITIONAL_OR_KEYWORD", False),
        ("maturity", "POSITIONAL_OR_KEYWORD", None),
        ("surface", "POSITIONAL_OR_KEYWORD", "supported"),
    ]
    assert params(worldflux.get_model_info) == [("model", "POSITIONAL_OR_KEYWORD", empty)]
    assert params(worldflux.get_config) == [
        ("model", "POSITIONAL_OR_KEYWORD", empty),
        ("obs_shape", "KEYWORD_ONLY", None),
        ("action_dim", "KEYWORD_ONLY", None),
        ("kwargs", "VAR_KEYWORD", empty),
    ]


def test_top_level_all_resolves_and_is_cached():
    assert len(worldflux.__all__) == len(set(worldflux.__all__))
    for name in worldflux.__all__:
        assert getattr(worldflux, name) is not None
        assert name in vars(worldflux)  # cached after first access
    namespace: dict[str, Any] = {}
    exec("from worldflux import *", namespace)
    assert set(worldflux.__all__) <= set(namespace)
    for name in ("create_world_model", "State", "Batch", "ActionPayload", "ModelIOContract", "WorldModelConfig"):
        assert name in worldflux.__all__
    assert worldflux.WorldModelOutput is worldflux.core.output.WorldModelOutput
    assert worldflux.core is __import__("worldflux.core").core


def test_top_level_unknown_names_and_deprecated_names():
    with pytest.raises(AttributeError, match="module 'worldflux' has no attribute 'NoSuchThing'"):
        _ = worldflux.NoSuchThing
    with pytest.warns(DeprecationWarning, match=r"Importing 'first_action' from 'worldflux' is deprecated\. Use"):
        from worldflux import first_action
    from worldflux.core.payloads import first_action as real

    assert first_action is real
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert worldflux.DiTSkeletonConfig().model_type == "dit"
    assert "first_action" not in worldflux.__all__


def test_version_is_a_string():
    assert isinstance(worldflux.__version__, str) and worldflux.__version__
