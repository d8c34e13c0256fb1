"""Gymnasium environments as batched, model-shaped streams for online training and agents.

``VectorEnvAdapter(env, obs_shape, action_dim, action_type, ...)`` accepts a gymnasium id (``"Pendulum-v1"``),
an ``Env`` or a vector env (``SyncVectorEnv`` / ``AsyncVectorEnv``) and exposes:

* ``reset(seed) -> obs [N, *obs_shape]`` float32;
* ``step(actions [N, A]) -> StepResult``: model actions in, model-shaped observations out. Continuous
  actions in ``[-1, 1]`` are rescaled to the ``Box``'s bounds; discrete actions are one-hot (argmax taken).
  Image observations (``H x W x C`` uint8, or frames of ``render_mode="rgb_array"`` when the model wants an
  image and the env gives vectors) are resized (nearest neighbour) to the model's ``(C, H, W)`` and scaled to
  ``[0, 1]``. Each row reports ``terminated`` and ``truncated`` separately, the observation that ended the
  episode (``final_obs``), and whether the returned observation starts a new episode (``first``).

Unsupported spaces (``Dict``, ``Tuple``, ``MultiDiscrete``, ``MultiBinary``, ...) raise ``ConfigurationError``
naming the space. Gymnasium is an optional dependency (``pip install 'worldflux[envs]'``).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from worldflux.core.exceptions import ConfigurationError

__all__ = ["StepResult", "VectorEnvAdapter", "resize_frames"]


def _gym() -> Any:
    try:
        import gymnasium
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "online training needs gymnasium: pip install 'worldflux[envs]' (gymnasium[classic-control], mujoco)"
        ) from exc
    return gymnasium


class StepResult(NamedTuple):
    """One vector step: ``obs [N, *obs_shape]`` (the next observation to act on; for finished rows the first
    observation of the next episode), ``reward [N]``, ``terminated [N]``, ``truncated [N]``, ``final_obs``
    (``[N, *obs_shape]``: the observation that ended the episode, equal to ``obs`` for unfinished rows),
    ``valid [N]`` (False for a row whose step only reset the env: nothing to record)."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    valid: np.ndarray


def resize_frames(frames: np.ndarray, obs_shape: tuple[int, ...]) -> np.ndarray:
    """``[N, H, W, C]`` (uint8 or float) -> ``[N, C', H', W']`` float32 in ``[0, 1]`` (nearest neighbour;
    a grey model (C' = 1) averages the colour channels)."""
    frames = np.asarray(frames)
    c, h, w = obs_shape
    rows = (np.arange(h) * frames.shape[1] // h).astype(np.int64)
    cols = (np.arange(w) * frames.shape[2] // w).astype(np.int64)
    small = frames[:, rows][:, :, cols].astype(np.float32)
    if frames.dtype == np.uint8:
        small /= 255.0
    if c == 1 and small.shape[-1] != 1:
        small = small.mean(axis=-1, keepdims=True)
    if small.shape[-1] != c:
        raise ConfigurationError(
            f"image observations have {small.shape[-1]} channels, the model's obs_shape {obs_shape}"
        )
    return np.ascontiguousarray(small.transpose(0, 3, 1, 2))


class VectorEnvAdapter:
    """A gymnasium (vector) env in the model's shapes; see the module docstring."""

    def __init__(
        self,
        env: Any,
        *,
        obs_shape: tuple[int, ...],
        action_dim: int,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        render: bool = False,
    ) -> None:
        gym = _gym()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = int(action_dim)
        wants_image = len(self.obs_shape) == 3
        self.owned = not isinstance(env, gym.vector.VectorEnv)
        if isinstance(env, str | gym.envs.registration.EnvSpec):  # an id or a spec: N fresh copies
            spec_space = gym.make(env).observation_space
            pixels = wants_image and not _is_image_space(spec_space)
            mode = "rgb_array" if (render or pixels) else None
            factories = [_factory(gym, env, mode, max_episode_steps, pixels) for _ in range(int(num_envs))]
            env = gym.vector.SyncVectorEnv(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        elif isinstance(env, gym.Env):
            if int(num_envs) != 1:
                raise ConfigurationError(f"num_envs must be 1 for an Env instance (got {num_envs}); pass an env id")
            single = env
            if max_episode_steps is not None:
                single = gym.wrappers.TimeLimit(single, int(max_episode_steps))
            if wants_image and not _is_image_space(single.observation_space):
                single = gym.wrappers.AddRenderObservation(single, render_only=True)
            env = gym.vector.SyncVectorEnv([lambda: single], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        elif isinstance(env, gym.vector.VectorEnv):
            if max_episode_steps is not None:
                raise ConfigurationError(
                    "max_episode_steps applies to env ids and Env instances; wrap the sub-envs of a vector env "
                    "in gymnasium.wrappers.TimeLimit instead"
                )
        else:
            raise ConfigurationError(
                f"env must be a gymnasium id (str), a gymnasium.Env or a gymnasium vector env, got {type(env).__name__}"
            )
        self.env = env
        self.num_envs = int(env.num_envs)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self.autoreset = getattr(mode, "value", str(mode))
        if self.autoreset not in ("NextStep", "SameStep"):
            raise ConfigurationError(f"vector env autoreset_mode must be NEXT_STEP or SAME_STEP, got {mode}")
        self._check_spaces(gym, env.single_observation_space, env.single_action_space)
        self._pending = np.zeros(self.num_envs, bool)

    # -- spaces ------------------------------------------------------------------------------------------
    def _check_spaces(self, gym: Any, obs_space: Any, act_space: Any) -> None:
        spaces = gym.spaces
        if not isinstance(obs_space, spaces.Box):
            raise ConfigurationError(
                f"unsupported observation space {obs_space!r}: only Box observations (vectors or images) are supported"
            )
        self.image = _is_image_space(obs_space)
        if self.image != (len(self.obs_shape) == 3):
            raise ConfigurationError(
                f"observation space {obs_space!r} does not fit the model's obs_shape {self.obs_shape}"
            )
        if not self.image and math.prod(obs_space.shape) != math.prod(self.obs_shape):
            raise ConfigurationError(
                f"observation space {obs_space!r} has {math.prod(obs_space.shape)} values, the model's obs_shape "
                f"{self.obs_shape} {math.prod(self.obs_shape)}"
            )
        if isinstance(act_space, spaces.Discrete):
            self.discrete = True
            n = int(act_space.n)
            self._start = int(act_space.start)
        elif isinstance(act_space, spaces.Box):
            self.discrete = False
            n = math.prod(act_space.shape)
            self._low = np.broadcast_to(act_space.low, act_space.shape).astype(np.float64).reshape(-1)
            self._high = np.broadcast_to(act_space.high, act_space.shape).astype(np.float64).reshape(-1)
            if not (np.isfinite(self._low).all() and np.isfinite(self._high).all()):
                raise ConfigurationError(f"action space {act_space!r} must be bounded to be rescaled from [-1, 1]")
            self._act_shape = act_space.shape
        else:
            raise ConfigurationError(
                f"unsupported action space {act_space!r}: only Box (continuous) and Discrete actions are supported"
            )
        if n != self.action_dim:
            raise ConfigurationError(
                f"action space {act_space!r} has {n} actions, the model's action_dim is {self.action_dim}"
            )

    # -- conversion --------------------------------------------------------------------------------------
    def _obs(self, raw: Any) -> np.ndarray:
        raw = np.asarray(raw)
        if self.image:
            return resize_frames(raw, self.obs_shape)
        return raw.reshape(raw.shape[0], *self.obs_shape).astype(np.float32)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Model actions ``[N, A]`` -> the env's actions (indices, or values in the Box bounds)."""
        actions = np.asarray(actions, np.float64)
        if self.discrete:
            return (np.argmax(actions, axis=-1) + self._start).astype(np.int64)
        a = np.clip(actions, -1.0, 1.0)
        scaled = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        return scaled.reshape(actions.shape[0], *self._act_shape).astype(np.float32)

    # -- stepping ----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self._pending[:] = False
        return self._obs(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(self.env_actions(actions))
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        obs = self._obs(obs)
        final = obs.copy()
        valid = ~self._pending
        if self.autoreset == "SameStep":
            done = terminated | truncated
            if done.any() and "final_obs" in info:
                for i in np.flatnonzero(done):
                    final[i] = self._obs(np.asarray(info["final_obs"][i])[None])[0]
        else:
            # NEXT_STEP: a finished row returns its final observation now and resets on the next step.
            self._pending = terminated | truncated
        reward = np.where(valid, np.asarray(reward, np.float32), 0.0).astype(np.float32)
        return StepResult(obs, reward, terminated & valid, truncated & valid, final, valid)

    def render(self) -> np.ndarray | None:
        """An RGB frame ``[H, W, 3]`` uint8 of the first env, or None when it cannot render."""
        try:
            frames = self.env.render()
        except Exception:  # noqa: BLE001 - rendering is optional
            return None
        if frames is None:
            return None
        frame = frames[0] if isinstance(frames, tuple | list) else frames
        frame = np.asarray(frame)
        if frame.ndim == 4:
            frame = frame[0]
        return frame.astype(np.uint8) if frame.ndim == 3 else None

    def close(self) -> None:
        if self.owned:
            self.env.close()


def _is_image_space(space: Any) -> bool:
    shape = getattr(space, "shape", None) or ()
    return len(shape) == 3 and shape[-1] in (1, 3, 4)


def offscreen_rendering() -> None:
    """Let SDL (pygame, which gymnasium's classic-control renderers use) draw ``rgb_array`` frames off screen on a
    machine without a display: without it SDL prints "XDG_RUNTIME_DIR is invalid" at the first frame. Nothing
    changes where a display exists or where the user chose the SDL drivers."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def _factory(gym: Any, env_id: Any, mode: str | None, max_steps: int | None, pixels: bool) -> Any:
    def make() -> Any:
        kwargs: dict[str, Any] = {}
        if mode is not None:
            kwargs["render_mode"] = mode
            offscreen_rendering()
        if max_steps is not None:
            kwargs["max_episode_steps"] = int(max_steps)
        env = gym.make(env_id, **kwargs)
        if pixels:
            env = gym.wrappers.AddRenderObservation(env, render_only=True)
        return env

    return make
