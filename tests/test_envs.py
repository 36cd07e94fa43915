"""The environment block the training scripts share: identical text in every script, and what its options do."""
import importlib
import pathlib
import re

import gymnasium as gym
import numpy as np
import pytest

ALGOS = pathlib.Path(__file__).resolve().parents[1] / "algos"
SCRIPTS_WITH_ENVS = ("ppo_rtu_rtrl", "ppo_lru_rtrl", "ppo_gru_tbptt", "ppo_lru_tbptt", "ppo_mlp", "r2ac_elstm")


def env_block(script):
    """The text between the `# Environments` banner and the `# Model` banner (the banners' titles left out)."""
    text = (ALGOS / f"{script}.py").read_text()
    match = re.search(r"^# Environments[^\n]*\n# -+\n(.*?)\n# -+\n# Model", text, re.S | re.M)
    assert match and len(match.group(1)) > 1000, f"{script}.py has no '# Environments' ... '# Model' block"
    return match.group(1)


@pytest.mark.parametrize("script", SCRIPTS_WITH_ENVS[1:])
def test_env_block_is_identical_across_scripts(script):
    """CleanRL-style copies are safe only if they stay copies: a fix in one script must reach all."""
    assert env_block(script) == env_block(SCRIPTS_WITH_ENVS[0]), f"algos/{script}.py's environment block differs"


mod = importlib.import_module("ppo_mlp")  # any script: the blocks are identical (test above)


def test_reacher_cue_reaches_the_network_at_a_sane_scale():
    """Normalised Reacher-POMDP: the target is hidden after normalisation, so its statistics see it on every step and
    the first-step cue is O(1), not scaled up by the tiny variance of a mostly-zero feature and clipped."""
    env = mod.make_env("Reacher-POMDP-v5", 0, False, "test", 0.99, normalize=True)()
    hidden = [4, 5, 8, 9]
    cues = []
    obs, _ = env.reset(seed=0)
    for episode in range(60):
        cues.append(obs[hidden])
        for t in range(50):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert np.all(obs[hidden] == 0), f"target visible at step {t + 1} of episode {episode}"
        assert truncated and not terminated
        obs, _ = env.reset()
    cues = np.array(cues[10:])  # after the statistics have warmed up
    assert np.abs(cues).max() <= 5, np.abs(cues).max(0)
    assert np.all(cues.std(0) > 0.3), cues.std(0)  # the cue varies: it carries the target


def test_pooled_statistics_are_one_mean_and_variance_over_all_features():
    env = mod.make_env("popgym-RepeatFirstEasy-v0", 0, False, "test", 0.99, True, "pooled", "baselines")()
    obs, _ = env.reset(seed=1)
    raw = [env._spy_last]
    for _ in range(50):  # one episode (51 steps)
        obs, *_ = env.step(env.action_space.sample())
        raw.append(env._spy_last)
    raw = np.array(raw, np.float64)
    mean, var, count = env.obs_rms
    assert np.ndim(mean) == 0 and np.ndim(var) == 0
    np.testing.assert_allclose(count, raw.size + 1e-4)
    # the prior (mean 0, var 1, count 1e-4) weighs 1e-4 / raw.size: negligible at this tolerance
    np.testing.assert_allclose(mean, raw.mean(), rtol=1e-5)
    np.testing.assert_allclose(var, raw.var(), rtol=1e-5)
    np.testing.assert_allclose(obs, np.clip((raw[-1] - mean) / np.sqrt(var + 1e-8), -10, 10), rtol=1e-5)


@pytest.fixture(autouse=True)
def spy_on_raw_observations(monkeypatch):
    """Record, in `env._spy_last`, the flattened raw observation each step's normalisation sees."""
    original = mod.EpisodeStatsClipNormalize._obs

    def spy(self, obs, *args, **kwargs):
        self._spy_last = gym.spaces.flatten(self.env.observation_space, obs)
        return original(self, obs, *args, **kwargs)

    monkeypatch.setattr(mod.EpisodeStatsClipNormalize, "_obs", spy)


def test_popgym_observation_choices():
    baselines = mod.make_env("popgym-RepeatFirstEasy-v0", 0, False, "test", 0.99, False, popgym_obs="baselines")()
    raw = mod.make_env("popgym-RepeatFirstEasy-v0", 0, False, "test", 0.99, False)()  # the default
    assert baselines.observation_space.shape == (10,)  # card, previous action, first-step flag (one-hot each)
    assert raw.observation_space.shape == (4,)  # the card only
    obs, _ = raw.reset(seed=0)
    assert obs.sum() == 1 and np.array_equal(obs, baselines.reset(seed=0)[0][:4])


def test_first_step_copy_and_previous_reward_across_autoresets():
    envs = gym.vector.SyncVectorEnv(
        [mod.make_env("popgym-RepeatFirstEasy-v0", 0, False, "test", 0.99, True, "feature", "raw", True, True)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = envs.reset(seed=0)
    assert envs.single_observation_space.shape == (9,)  # card, its first-step copy, previous reward
    np.testing.assert_array_equal(obs[0, 4:8], obs[0, :4])
    assert obs[0, 8] == 0
    starts = 0
    for t in range(120):  # episodes of 51 steps: two autoresets
        obs, reward, terminated, truncated, infos = envs.step(envs.action_space.sample())
        if terminated[0] or truncated[0]:
            starts += 1
            np.testing.assert_array_equal(obs[0, 4:8], obs[0, :4])  # the next episode's first observation
            assert obs[0, 8] == 0
            assert infos["final_obs"][0][8] == np.float32(reward[0])
        else:
            assert np.all(obs[0, 4:8] == 0)
            assert obs[0, 8] == np.float32(reward[0]) and reward[0] != 0  # normalised reward, as the agent gets it
    assert starts == 2
