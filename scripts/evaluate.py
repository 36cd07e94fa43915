"""Evaluate a saved agent: the mean and std of its episodic return over N fresh episodes.

    python scripts/evaluate.py RUN_DIR_OR_CHECKPOINT --episodes 10 [--seed 0] [--capture-video]

RUN_DIR_OR_CHECKPOINT is a run dir (its checkpoint.pt is used) or a checkpoint file (checkpoint.pt, or the
`<exp_name>.cleanrl_model` that --save-model writes). The agent is rebuilt by the script that trained it, from the
args saved in the checkpoint. The observation normalisation uses the saved statistics, frozen. The recurrent carry
starts at zero and is carried through each episode. Actions are sampled from the policy, as in training.
"""
import argparse
import importlib.util
import io
import os
import pickle
import sys

import gymnasium as gym
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name):
    """Import algos/<name> as a module (the scripts are single files, not a package)."""
    sys.path.insert(0, ROOT)  # the recurrent scripts import triton_kernels from the repo root
    spec = importlib.util.spec_from_file_location(name[: -len(".py")], os.path.join(ROOT, "algos", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ScriptUnpickler(pickle.Unpickler):
    """The training script pickled its envs' wrappers as classes of `__main__`: look them up in the script module."""

    def __init__(self, data, script):
        super().__init__(io.BytesIO(data))
        self.script = script

    def find_class(self, module, name):
        return getattr(self.script, name) if module == "__main__" else super().find_class(module, name)


def saved_statistics(checkpoint, script):
    """The first training env's outermost wrapper (make_env's EpisodeStatsClipNormalize), as pickled in the
    checkpoint: it holds the observation and reward statistics."""
    return ScriptUnpickler(checkpoint["envs"], script).load()[0][0]


def evaluate(path, episodes, seed=0, capture_video=False):
    """Returns the list of episodic returns."""
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.pt")
    if not os.path.isfile(path):
        sys.exit(f"error: no checkpoint at {path}")
    checkpoint = torch.load(path, weights_only=False)
    if not isinstance(checkpoint, dict) or "script" not in checkpoint:
        sys.exit(f"error: {path} is not a checkpoint of the scripts in algos/")
    script = load_script(checkpoint["script"])
    if not hasattr(script, "make_env"):
        sys.exit(f"error: {path} is a run of {checkpoint['script']}, which has no environment to evaluate in")
    # runs saved before these options existed used the POPGym baselines' input and per-feature statistics
    legacy = {"popgym_obs": "baselines", "obs_norm": "feature", "reward_input": False}
    legacy = {k: v for k, v in legacy.items() if k not in checkpoint["args"] and hasattr(script.Args, k)}
    args = script.Args(**legacy, **checkpoint["args"])
    args.num_envs = 1
    if hasattr(args, "compile"):
        args.compile = False  # a handful of episodes: not worth compiling
    family = script.env_family(args.env_id)
    if capture_video:
        script.check_video(family)
    normalize = args.normalize_env if args.normalize_env is not None else family != "popgym"
    run_name = f"eval__{os.path.basename(os.path.dirname(os.path.abspath(path)))}"
    options = {k: getattr(args, k) for k in ("obs_norm", "popgym_obs", "first_step_copy", "prev_reward") if hasattr(args, k)}
    env = script.make_env(args.env_id, 0, capture_video, run_name, args.gamma, normalize, **options)()
    if normalize:
        saved = saved_statistics(checkpoint, script)
        env.obs_rms, env.ret_rms = saved.obs_rms, saved.ret_rms  # the reward too: R2AC's core reads it
    env.update = False  # frozen statistics
    envs = gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent = script.Agent(envs, args)
    agent.load_state_dict(checkpoint["model"])
    agent.eval()

    torch.manual_seed(seed)
    returns = []
    obs, _ = envs.reset(seed=seed)
    carry, reset, last_reward = agent.initial_carry(1), torch.ones(1), torch.zeros(1)
    while len(returns) < episodes:
        with torch.inference_mode():
            # R2AC with --reward-input reads the previous reward, as in training
            extra = {"last_reward": last_reward} if getattr(agent, "reward_input", False) else {}
            action, _, _, carry = agent.policy_step(torch.as_tensor(obs, dtype=torch.float32), carry, reset, **extra)
        obs, reward, terminations, truncations, infos = envs.step(action.numpy())
        last_reward = torch.as_tensor(reward, dtype=torch.float32)
        reset = torch.as_tensor(np.logical_or(terminations, truncations), dtype=torch.float32)
        if "final_info" in infos and "episode" in infos["final_info"]:
            returns.append(float(infos["final_info"]["episode"]["r"][0]))
            print(f"episode {len(returns)}: return {returns[-1]:.3f}")
    envs.close()
    return returns


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", help="a run dir or a checkpoint file")
    parser.add_argument("--episodes", type=int, default=10, help="number of episodes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs and of the action sampling")
    parser.add_argument("--capture-video", action="store_true", help="record videos into videos/eval__<run>")
    cli = parser.parse_args()
    if cli.episodes < 1:
        sys.exit(f"error: --episodes must be >= 1, got {cli.episodes}")
    returns = evaluate(cli.path, cli.episodes, cli.seed, cli.capture_video)
    print(f"mean return {np.mean(returns):.3f} +- {np.std(returns):.3f} (std) over {len(returns)} episodes")
