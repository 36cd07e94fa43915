# PPO + Recurrent Trace Units (RTU) trained by exact Real-Time Recurrent Learning.
# Docs: README.md; the RTU and its RTRL traces: triton_kernels/rtu.py (Elelimy et al. 2024, arXiv 2409.01449).
#
# The RTRL scheme in one paragraph: during the rollout every step stores the recurrent carry from BEFORE the step
# (state and all RTRL traces). The PPO update shuffles single transitions, re-runs ONE recurrent step from the
# stored carry with the current parameters, and the recurrent parameters take their gradient from the new traces
# (which summarise the whole history), while the encoder gets the one-step gradient. Sequences are never re-unrolled.
# The stored traces were computed with the rollout's parameters and are not recomputed: a "stale" gradient, as in
# Elelimy et al. 2024, whose ablation found it better than a recomputed one (README: "How PPO with RTRL works here").
import datetime
import json
import os
import pickle
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.distributions.categorical import Categorical
from torch.distributions.normal import Normal
from torch.utils.tensorboard import SummaryWriter

# non-finite values must reach the script's own checks (one line naming the step), not fail inside a distribution
torch.distributions.Distribution.set_default_validate_args(False)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: triton_kernels
from triton_kernels.rtu import (RTUParams, RTUTraces, rtu_grads_from_carry, rtu_init_params, rtu_state_step, rtu_step,
                                rtu_zero_carry)


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be enabled when available (the trace update then runs the Triton kernel)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "rtrl-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to capture videos of the agent performances (check out `videos` folder)"""
    save_model: bool = False
    """whether to save the model weights and observation-normalisation statistics into `runs/{run_name}`"""
    checkpoint_interval: int = 10
    """save `runs/{run_name}/checkpoint.pt` every N iterations and at the end (0: only at the end)"""
    resume: Optional[str] = None
    """continue the run in this run dir from its checkpoint (its saved args; a larger --total-timesteps extends it)"""

    # Algorithm specific arguments (defaults: the PPO configuration of the official RTU code, Elelimy et al. 2024)
    env_id: str = "HalfCheetah-P-v5"
    """the id of the environment (MuJoCo -P/-V, MuJoCo v5, Reacher-POMDP-v5 or popgym-*-v0)"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiments"""
    learning_rate: float = 1e-4
    """the learning rate of the optimizer"""
    num_envs: int = 1
    """the number of parallel game environments"""
    num_steps: int = 2048
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = False
    """Toggle learning rate annealing for policy and value networks"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 32
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: float = 0.0
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Optional[float] = None
    """the target KL divergence threshold"""
    truncation_as_termination: bool = False
    """treat time-limit truncation as termination (the paper's choice) instead of bootstrapping from the final observation"""
    normalize_env: bool = True
    """normalise observations and rewards by running statistics (clipped at +-10), as the official RTU code does"""
    obs_norm: Optional[Literal["feature", "pooled"]] = None
    """observation statistics per feature (CleanRL's) or one mean and variance pooled over all features (the official
    RTU code's: it runs one unbatched env); default: pooled for POPGym, per feature otherwise"""
    popgym_obs: Literal["raw", "baselines"] = "raw"
    """POPGym observation: the env's own only (as in the JAX ports the official RTU code runs), or with the previous
    action and a first-step flag appended (POPGym baselines' wrapping; with it RepeatFirst needs no memory: name the
    card at the first step, then repeat the previous action)"""
    prev_reward: bool = False
    """append the previous reward (as the agent receives it, 0 at an episode's first step) to the observation"""
    first_step_copy: bool = False
    """diagnostic: append a copy of the observation that is zero after an episode's first step (hands the cue to
    remember to the recurrent layer as an input of its own)"""

    # Model specific arguments
    encoder_dim: int = 64
    """D: width of the observation encoder Dense+tanh, the input of the recurrent layer"""
    hidden_dim: int = 192
    """n: number of RTU units (the output has 2n features: real and imaginary parts)"""
    head_dim: int = 64
    """width of the actor and critic hidden layers"""
    rtu_variant: Literal["nonlinear", "linear"] = "nonlinear"
    """non-linear RTU (activation inside the recurrence) or linear RTU (activation on the output only)"""
    activation: Literal["relu", "tanh"] = "relu"
    """the RTU activation f"""
    r_min: float = 0.0
    """smallest initial |lambda| of the RTU (uniform on the disk between r_min and r_max)"""
    r_max: float = 1.0
    """largest initial |lambda| of the RTU"""
    fresh_carries: bool = False
    """ablation (stale vs fresh gradients): after every epoch but the last, re-run the rollout's observations from its
    first stored carry with the current parameters and store the new carries (states and traces); default: the
    carries stored at rollout time are used in every epoch (stale)"""
    fresh_targets: bool = False
    """ablation (stale vs fresh targets): after every epoch but the last, recompute the values, advantages and returns
    with the current parameters (from the stored carries, refreshed or not)"""
    compile: bool = True
    """torch.compile the rollout's recurrent step and the update's RTRL gradient (the latter fuses the gather of the
    stored traces with their contraction); compiling costs about 25 s in the first iteration (cold cache)"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


# ---------------------------------------------------------------------------------------------------------------
# Environments: the partially observable tasks of Elelimy et al. 2024, built on gymnasium v5 and popgym
# ---------------------------------------------------------------------------------------------------------------
# Observation indices kept by the MuJoCo -P (positions) and -V (velocities) variants, gymnasium v5 layout.
MUJOCO_PV_INDICES = {
    "Ant": (range(0, 13), range(13, 27)),  # made with include_cfrc_ext_in_observation=False (27 dims)
    "HalfCheetah": (range(0, 8), range(8, 17)),
    "Hopper": (range(0, 5), range(5, 11)),
    "Walker2d": (range(0, 8), range(8, 17)),
}
REACHER_HIDDEN_INDICES = [4, 5, 8, 9]  # target position and fingertip-minus-target vector
SUPPORTED_ENVS = (
    "MuJoCo -P/-V ({Ant,HalfCheetah,Hopper,Walker2d}-{P,V}-v5), MuJoCo v5 ids (e.g. HalfCheetah-v5), "
    "Reacher-POMDP-v5, popgym-<Name><Easy|Medium|Hard>-v0"
)


class KeepObservationIndices(gym.ObservationWrapper):
    """MuJoCo -P/-V: keep only the given observation indices."""

    def __init__(self, env, indices):
        super().__init__(env)
        self.indices = np.asarray(indices)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (len(self.indices),), np.float64)

    def observation(self, obs):
        return obs[self.indices]


def running_moments(mean, var, count, batch_mean, batch_var=0.0, batch_count=1):
    """Merge a batch's moments into running ones (Chan et al.'s parallel update, as gymnasium's RunningMeanStd);
    one sample x is the batch (x, 0, 1)."""
    delta = batch_mean - mean
    total = count + batch_count
    new_var = (var * count + batch_var * batch_count + delta * delta * count * batch_count / total) / total
    return mean + delta * batch_count / total, new_var, total


def clip(x, bound):
    """np.clip(x, -bound, bound) for arrays and floats, without np.clip's dispatch cost (a few us, every step)."""
    return np.minimum(np.maximum(x, -bound), bound) if isinstance(x, np.ndarray) else min(max(x, -bound), bound)


class EpisodeStatsClipNormalize(gym.Wrapper):
    """CleanRL's wrapper stack in one pass per step, with gymnasium's arithmetic: FlattenObservation,
    RecordEpisodeStatistics (raw returns in info["episode"]), ClipAction, and optionally NormalizeObservation,
    NormalizeReward and the two clips at +-10. obs -> clip((obs - mean) / sqrt(var + 1e-8)) with running statistics
    of the raw observations; reward -> clip(r / sqrt(var_G + 1e-8)), var_G the running variance of the discounted
    return G <- gamma G (1 - term) + r. `update = False` freezes the statistics (evaluation).
    Options: `pooled` keeps one mean and variance over all features (an observation adds its d entries as d
    samples). `hide_after_first` lists entries shown at an episode's first step only; they are zeroed after
    normalisation, so their statistics see every step and the first-step cue keeps the fully observed task's scale.
    `first_step_copy` and `prev_reward` append inputs after normalisation."""

    def __init__(self, env, gamma, normalize, pooled=False, hide_after_first=(), first_step_copy=False,
                 prev_reward=False, clip=10.0, eps=1e-8):
        super().__init__(env)
        self.gamma, self.normalize, self.clip, self.eps, self.update = gamma, normalize, clip, eps, True
        self.pooled, self.hidden = pooled, list(hide_after_first)
        self.first_step_copy, self.prev_reward = first_step_copy, prev_reward
        self.box = env.action_space if isinstance(env.action_space, gym.spaces.Box) else None
        if self.box is not None:
            self.action_space = gym.spaces.Box(-np.inf, np.inf, self.box.shape, self.box.dtype)
        self.observation_space = gym.spaces.flatten_space(env.observation_space)
        # a Box is flattened by hand (as gym.spaces.flatten does, without its dispatch cost)
        self.box_dtype = env.observation_space.dtype if isinstance(env.observation_space, gym.spaces.Box) else None
        shape = self.observation_space.shape
        # mean, var, count; float32 at the start as gymnasium's (its first update rounds var * count in float32)
        self.obs_rms = [np.zeros(() if pooled else shape, np.float32), np.ones(() if pooled else shape, np.float32), 1e-4]
        self.ret_rms, self.G = [0.0, 1.0, 1e-4], 0.0
        if normalize:
            self.observation_space = gym.spaces.Box(-clip, clip, shape, np.float32)
        if first_step_copy or prev_reward:
            size = shape[0] * (1 + first_step_copy) + prev_reward
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.episode_return, self.episode_length = 0.0, 0

    def _obs(self, obs, first, reward=0.0):
        if self.box_dtype is not None:
            obs = np.asarray(obs, dtype=self.box_dtype).flatten()
        else:
            obs = gym.spaces.flatten(self.env.observation_space, obs)
        if self.normalize:
            if self.update:
                moments = (obs.mean(), obs.var(), obs.size) if self.pooled else (obs,)
                self.obs_rms = list(running_moments(*self.obs_rms, *moments))
            obs = clip(np.float32((obs - self.obs_rms[0]) / np.sqrt(self.obs_rms[1] + self.eps)), self.clip)
        if self.hidden and not first:
            obs = obs.copy()
            obs[self.hidden] = 0.0
        if self.first_step_copy or self.prev_reward:
            copy = [obs if first else np.zeros_like(obs)] if self.first_step_copy else []
            obs = np.concatenate([obs, *copy, [reward] if self.prev_reward else []], dtype=np.float32)
        return obs

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.episode_return, self.episode_length = 0.0, 0
        return self._obs(obs, first=True), info

    def step(self, action):
        if self.box is not None:
            action = np.minimum(np.maximum(action, self.box.low), self.box.high)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += reward
        self.episode_length += 1
        # only the episode statistics are passed on: the loop reads nothing else, and the vector env batches every
        # info key of every step (tens of us a step for MuJoCo's four reward terms)
        info = {"episode": {"r": self.episode_return, "l": self.episode_length}} if terminated or truncated else {}
        if self.normalize:
            self.G = self.G * self.gamma * (1 - terminated) + float(reward)
            if self.update:
                self.ret_rms = list(running_moments(*self.ret_rms, self.G))
            reward = clip(reward / np.sqrt(self.ret_rms[1] + self.eps), self.clip)
        return self._obs(obs, False, reward), reward, terminated, truncated, info


def env_family(env_id: str) -> str:
    """Classify an env id, or exit with a one-line message listing the supported families."""
    if env_id.startswith("popgym-"):
        import popgym  # noqa: F401  (registers the popgym-* ids)
    if re.fullmatch(r"(Ant|HalfCheetah|Hopper|Walker2d)-[PV]-v5", env_id):
        return "mujoco_pv"
    if env_id == "Reacher-POMDP-v5":
        return "reacher_pomdp"
    spec = gym.registry.get(env_id)
    entry = str(spec.entry_point) if spec is not None else ""
    if env_id.startswith("popgym-") and entry.startswith("popgym."):
        return "popgym"
    if entry.startswith("gymnasium.envs.mujoco"):
        return "mujoco"
    sys.exit(f"error: unknown env id {env_id!r}; supported: {SUPPORTED_ENVS}")


def make_env(env_id, idx, capture_video, run_name, gamma, normalize, obs_norm=None, popgym_obs="raw",
             first_step_copy=False, prev_reward=False):
    family = env_family(env_id)
    pooled = obs_norm == "pooled" if obs_norm is not None else family == "popgym"

    def thunk():
        render_mode = "rgb_array" if capture_video and idx == 0 else None
        hidden = []
        if family == "popgym":
            from popgym import wrappers as pw

            env = gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)()  # the raw popgym class
            if popgym_obs == "baselines":  # POPGym baselines' wrapping: previous action + antialias (first-step) flag
                env = pw.Flatten(pw.Antialias(pw.PreviousAction(env)))
            if isinstance(env.action_space, gym.spaces.MultiDiscrete):
                env = pw.DiscreteAction(env)
        elif family == "mujoco_pv":
            name, variant = env_id.split("-")[:2]
            kwargs = {"include_cfrc_ext_in_observation": False} if name == "Ant" else {}
            env = gym.make(f"{name}-v5", render_mode=render_mode, disable_env_checker=True, **kwargs)
            env = KeepObservationIndices(env, MUJOCO_PV_INDICES[name][variant == "V"])
        elif family == "reacher_pomdp":
            env = gym.make("Reacher-v5", render_mode=render_mode, disable_env_checker=True)
            hidden = REACHER_HIDDEN_INDICES  # the target: shown at the first step only
        else:
            kwargs = {"include_cfrc_ext_in_observation": False} if env_id.startswith("Ant-") else {}
            env = gym.make(env_id, render_mode=render_mode, disable_env_checker=True, **kwargs)
        if render_mode is not None:
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}", gc_trigger=None)  # None: picklable
        return EpisodeStatsClipNormalize(env, gamma, normalize, pooled, hidden, first_step_copy, prev_reward)

    return thunk


# ---------------------------------------------------------------------------------------------------------------
# Model: encoder -> RTU (exact RTRL) -> actor / critic heads
# ---------------------------------------------------------------------------------------------------------------
def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class RTUStepRTRL(torch.autograd.Function):
    """One RTU step (triton_kernels/rtu.py) from stored carries, whose backward is exact RTRL.

    The carry of each sample is row `index` of the flattened rollout buffers (state, traces). forward: the new state
    only. backward: the recurrent parameters get sum_b delta1*e1 + delta2*e2 over the NEW traces (they carry the whole
    history, so nothing is unrolled), formed from the stored old traces without materialising the new ones (they are
    linear in the old ones); the input x gets the one-step gradient, the previous state being a constant of the carry.
    `grads_from_carry` is rtu_grads_from_carry or its torch.compile'd version (the trace gather then fuses with the
    contraction: the gathered traces are never materialised).
    """

    @staticmethod
    def forward(ctx, x, nu_log, theta_log, W1, W2, b_states, trace_nu, trace_theta, trace_W1, trace_W2, index, reset,
                activation, grads_from_carry):
        state = b_states.index_select(0, index)
        new_state = rtu_state_step(RTUParams(nu_log, theta_log, W1, W2), x, state, reset, activation)
        ctx.save_for_backward(x, nu_log, theta_log, W1, W2, b_states, trace_nu, trace_theta, trace_W1, trace_W2, index,
                              reset, new_state)
        ctx.activation, ctx.grads_from_carry = activation, grads_from_carry
        return new_state

    @staticmethod
    def backward(ctx, delta):
        x, nu_log, theta_log, W1, W2, b_states, *traces, index, reset, new_state = ctx.saved_tensors
        grad_x, grad_params = ctx.grads_from_carry(RTUParams(nu_log, theta_log, W1, W2), x, b_states, RTUTraces(*traces),
                                                   reset, new_state, delta, ctx.activation, index=index)
        return (grad_x, *grad_params) + (None,) * 9


def sample_action(out, logstd=None):
    """Sample actions and their log-probs without distribution objects (the rollout's hot loop): a diagonal Gaussian
    with mean `out` and state-independent `logstd`, or, if logstd is None, a categorical with logits `out` sampled
    by inverting its CDF. Same distributions and log-probs as torch's Normal and Categorical."""
    if logstd is not None:
        logstd = logstd.expand_as(out)
        noise = torch.randn_like(out)
        action = out + logstd.exp() * noise
        return action, (-0.5 * noise**2 - logstd - 0.5 * np.log(2 * np.pi)).sum(1)
    logp = torch.log_softmax(out, -1)
    u = torch.rand(out.shape[0], 1, device=out.device, dtype=out.dtype)
    action = (logp.exp().cumsum(-1) < u).sum(-1).clamp_max(out.shape[-1] - 1)
    return action, logp.gather(-1, action[:, None]).squeeze(-1)


class Agent(nn.Module):
    def __init__(self, envs, args):
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        self.continuous = isinstance(envs.single_action_space, gym.spaces.Box)
        self.hidden_dim, self.encoder_dim = args.hidden_dim, args.encoder_dim
        # Non-linear RTU: f inside the recurrence (the kernel applies it). Linear RTU: f on the output only.
        self.recurrent_activation = args.activation if args.rtu_variant == "nonlinear" else "linear"
        self.output_activation = {"relu": torch.relu, "tanh": torch.tanh}[args.activation]
        self.encoder = nn.Sequential(layer_init(nn.Linear(obs_dim, args.encoder_dim)), nn.Tanh())
        # --compile: the rollout's policy step and the update's RTRL gradient run as torch.compile'd (fused) code; the
        # update's forward step is small enough that compiling it (3 s) would not pay
        if args.compile:
            self.policy_step = torch.compile(self.policy_step)
        # --fresh-carries replays the rollout after every epoch but the last: compiled, ~2x faster
        self.replay_step = torch.compile(self.step) if args.compile else self.step
        self.grads_from_carry = torch.compile(rtu_grads_from_carry, dynamic=False) if args.compile else rtu_grads_from_carry
        rtu = rtu_init_params(args.hidden_dim, args.encoder_dim, args.r_min, args.r_max)
        self.nu_log, self.theta_log, self.W1, self.W2 = (nn.Parameter(p) for p in rtu)
        features = 2 * args.hidden_dim
        self.critic = nn.Sequential(
            layer_init(nn.Linear(features, args.head_dim)), nn.Tanh(), layer_init(nn.Linear(args.head_dim, 1), std=1.0)
        )
        if self.continuous:
            action_dim = int(np.prod(envs.single_action_space.shape))
            self.actor = nn.Sequential(
                layer_init(nn.Linear(features, args.head_dim)), nn.Tanh(), layer_init(nn.Linear(args.head_dim, action_dim), std=0.01)
            )
            self.actor_logstd = nn.Parameter(torch.zeros(1, action_dim))  # state-independent log-std, init 0
        else:
            self.actor = nn.Sequential(
                layer_init(nn.Linear(features, args.head_dim)), nn.Tanh(),
                layer_init(nn.Linear(args.head_dim, envs.single_action_space.n), std=0.01),
            )

    def rtu_params(self):
        return RTUParams(self.nu_log, self.theta_log, self.W1, self.W2)

    def recurrent_parameter_count(self):
        return sum(p.numel() for p in self.rtu_params())

    def features(self, state):
        """RTU output [h1, h2] (width 2n); the linear RTU applies f here, outside the recurrence."""
        out = state.flatten(1)
        return out if self.recurrent_activation != "linear" else self.output_activation(out)

    def step(self, obs, state, traces, reset):
        """One recurrent step without sampling, eager (no separate compile): the bootstrap value at a time limit and
        at the end of a rollout."""
        x = self.encoder(obs)
        return rtu_step(self.rtu_params(), x, state, traces, reset, self.recurrent_activation)

    def state_only_step(self, obs, state, reset):
        """One recurrent step without traces or gradient (fresh targets from stored carries)."""
        return rtu_state_step(self.rtu_params(), self.encoder(obs), state, reset, self.recurrent_activation)

    def step_rtrl(self, obs, b_states, b_traces, index, reset):
        """Update step from the stored carries of rows `index` of the rollout buffers: differentiable, with the RTRL
        backward."""
        x = self.encoder(obs)
        return RTUStepRTRL.apply(x, *self.rtu_params(), b_states, *b_traces, index, reset, self.recurrent_activation,
                                 self.grads_from_carry)

    def initial_carry(self, batch, device=None):
        """The carry (state, traces) before an episode's first step: zeros. The linear RTU's traces are compact: its
        W2 traces are i times its W1 traces, so only the W1 ones are stored (half the trace memory)."""
        return rtu_zero_carry(batch, self.hidden_dim, self.encoder_dim, device=device,
                              compact=self.recurrent_activation == "linear")

    def policy_step(self, obs, carry, reset):
        """The rollout's whole step (no gradient), one compiled function under --compile: the RTU step with its
        traces, a sampled action with its log-prob, and the value. The new carry is the next step's stored carry."""
        state, traces = carry
        new_state, new_traces = rtu_step(self.rtu_params(), self.encoder(obs), state, traces, reset,
                                         self.recurrent_activation)
        hidden = self.features(new_state)
        action, logprob = sample_action(self.actor(hidden), self.actor_logstd if self.continuous else None)
        return action, logprob, self.critic(hidden).flatten(), (new_state, new_traces)

    def get_value(self, state):
        return self.critic(self.features(state))

    def get_action_and_value(self, state, action=None):
        hidden = self.features(state)
        if self.continuous:
            action_mean = self.actor(hidden)
            probs = Normal(action_mean, self.actor_logstd.expand_as(action_mean).exp())
            if action is None:
                action = probs.sample()
            return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(hidden)
        probs = Categorical(logits=self.actor(hidden))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden)


def gae(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """Advantages (GAE) and returns of a rollout; dones[t] = an episode started at step t."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0
    for t in reversed(range(len(rewards))):
        if t == len(rewards) - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values


def refresh_carries(agent, obs, dones, carry_states, carry_traces):
    """Fresh carries: replay the rollout's observations from its first stored carry with the current parameters and
    overwrite the stored carries in place, each still the carry BEFORE its step (as the rollout stores it), resets
    included. Returns the values of the replayed steps (after each step: of the next stored carry) and the carry
    after the last step."""
    state, traces = carry_states[0], type(carry_traces)(*(t[0] for t in carry_traces))
    for t in range(len(obs)):
        carry_states[t] = state
        for buf, trace in zip(carry_traces, traces):
            buf[t] = trace
        state, traces = agent.replay_step(obs[t], state, traces, dones[t])
    values = agent.get_value(torch.cat([carry_states[1:], state[None]]).flatten(0, 1)).reshape(dones.shape)
    return values, (state, traces)


def check_args(args):
    """Exit with one line on a size or rate no run can use, before anything is created."""
    for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "encoder_dim",
                 "hidden_dim", "head_dim", "learning_rate", "clip_coef", "max_grad_norm"):
        if not getattr(args, name) > 0:
            sys.exit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("gamma", "gae_lambda"):
        if not 0 <= getattr(args, name) <= 1:
            sys.exit(f"error: --{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.checkpoint_interval < 0:
        sys.exit(f"error: --checkpoint-interval must be >= 0, got {args.checkpoint_interval}")
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = args.total_timesteps // args.batch_size
    if args.batch_size % args.num_minibatches != 0:
        sys.exit(f"error: num_envs*num_steps={args.batch_size} is not divisible by num_minibatches={args.num_minibatches}")
    if args.num_iterations < 1:
        sys.exit(f"error: total_timesteps={args.total_timesteps} is smaller than one rollout ({args.batch_size} steps)")


def check_video(family):
    """--capture-video on a machine without a display: MuJoCo renders through EGL; videos are written by moviepy."""
    if family == "popgym":
        sys.exit("error: --capture-video needs rendering, which popgym envs do not provide")
    try:
        import moviepy  # noqa: F401
    except ImportError:
        sys.exit("error: --capture-video needs moviepy: pip install moviepy")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def resume_args(args):
    """--resume RUN_DIR: the run's saved Args and checkpoint. A flag given now must equal the saved value, except a
    larger --total-timesteps, which extends the run (unless the learning rate anneals over the total)."""
    path = os.path.join(args.resume, "checkpoint.pt")
    if not os.path.isfile(path):
        sys.exit(f"error: --resume {args.resume}: no checkpoint.pt there")
    checkpoint = torch.load(path, weights_only=False)
    if checkpoint["script"] != os.path.basename(__file__):
        sys.exit(f"error: --resume {args.resume} is a run of {checkpoint['script']}, not {os.path.basename(__file__)}")
    missing = [f.name for f in fields(Args) if f.name not in checkpoint["args"]]
    if missing:  # its defaults may not be what the run used
        sys.exit(f"error: --resume {args.resume}: the checkpoint predates --{missing[0].replace('_', '-')}; start the run over")
    saved, default = Args(**checkpoint["args"]), Args()
    for f in fields(Args):
        given = getattr(args, f.name)
        if f.name in ("resume", "total_timesteps", "batch_size", "minibatch_size", "num_iterations"):
            continue
        if given != getattr(default, f.name) and given != getattr(saved, f.name):
            sys.exit(f"error: --{f.name.replace('_', '-')} {given} differs from the resumed run's {getattr(saved, f.name)}")
    if args.total_timesteps != default.total_timesteps and args.total_timesteps != saved.total_timesteps:
        if saved.anneal_lr:
            sys.exit("error: cannot change --total-timesteps of a run whose learning rate anneals over it")
        if args.total_timesteps < checkpoint["global_step"]:
            sys.exit(f"error: --total-timesteps {args.total_timesteps} is below the run's {checkpoint['global_step']} steps")
        saved.total_timesteps = args.total_timesteps
    saved.resume = args.resume
    return saved, checkpoint


def env_state(envs):
    """The envs' state for an exact resume: the wrapper chains pickled (statistics, episode counters, time limits,
    popgym's game state), plus MuJoCo's physics and RNG, which the env's pickle rebuilds from scratch. A video being
    recorded is left out (its frames are large): after a resume, recording starts again with the next video."""
    physics, videos = [], []
    for env in envs.envs:
        wrapper = env
        while hasattr(wrapper, "env"):
            if isinstance(wrapper, gym.wrappers.RecordVideo):
                videos.append((wrapper, wrapper.recorded_frames, wrapper.recording))
                wrapper.recorded_frames, wrapper.recording = [], False
            wrapper = wrapper.env
        sim = env.unwrapped
        if hasattr(sim, "data"):
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            state = np.empty(mujoco.mj_stateSize(sim.model, spec))
            mujoco.mj_getState(sim.model, sim.data, state, spec)
            physics.append((state, sim.np_random.bit_generator.state))
        else:
            physics.append(None)
    blob = pickle.dumps((envs.envs, physics))
    for wrapper, frames, recording in videos:
        wrapper.recorded_frames, wrapper.recording = frames, recording
    return blob


def restore_env_state(envs, blob):
    envs.envs, physics = pickle.loads(blob)
    for env, saved in zip(envs.envs, physics):
        if saved is not None:
            import mujoco

            sim = env.unwrapped
            mujoco.mj_setState(sim.model, sim.data, saved[0], mujoco.mjtState.mjSTATE_INTEGRATION)
            sim.np_random.bit_generator.state = saved[1]


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a kill at any moment leaves the previous checkpoint intact."""
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def write_done_marker(run_dir, args, global_step, wall_time):
    """The completion marker that sweeps and plots read: the full configuration, the steps done and the commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    marker = dict(script=os.path.basename(__file__), args=vars(args), command=sys.argv, global_step=global_step,
                  iterations=args.num_iterations, wall_time_s=round(wall_time, 1), commit=commit,
                  finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(os.path.join(run_dir, "done.json"), "w") as f:
        json.dump(marker, f, indent=1)


if __name__ == "__main__":
    args = tyro.cli(Args)
    checkpoint = None
    if args.resume:
        args, checkpoint = resume_args(args)
    check_args(args)  # also computes the batch sizes
    family = env_family(args.env_id)  # exits with a clear message on an unknown id
    if args.capture_video:
        check_video(family)
    normalize = args.normalize_env
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = f"runs/{run_name}"
    if checkpoint is not None:
        run_dir, run_name = args.resume, os.path.basename(os.path.normpath(args.resume))
        if checkpoint["global_step"] >= args.num_iterations * args.batch_size:
            print(f"{run_dir} already finished at global_step={checkpoint['global_step']}")
            if not os.path.exists(os.path.join(run_dir, "done.json")):  # killed between final checkpoint and marker
                write_done_marker(run_dir, args, checkpoint["global_step"], checkpoint["wall_time"])
            sys.exit(0)
        if os.path.exists(os.path.join(run_dir, "done.json")):
            os.remove(os.path.join(run_dir, "done.json"))  # extended: no longer complete
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, monitor_gym=True, save_code=True)
    # on resume, TensorBoard drops what the interrupted run logged after its checkpoint (purge_step)
    writer = SummaryWriter(run_dir, purge_step=None if checkpoint is None else checkpoint["global_step"] + 1)
    if checkpoint is None:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
        )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # env setup: SAME_STEP autoreset, so a step that ends an episode returns the next episode's first observation
    # and the final observation sits in infos["final_obs"]; no fake transition is inserted (NEXT_STEP would).
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name, args.gamma, normalize, args.obs_norm, args.popgym_obs,
                  args.first_step_copy, args.prev_reward) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    agent = Agent(envs, args).to(device)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)  # fused: ~3x faster step on CPU
    num_recurrent = agent.recurrent_parameter_count()
    print(f"recurrent parameters: {num_recurrent}")
    if checkpoint is None:
        writer.add_text("model/recurrent_parameters", str(num_recurrent))

    # ALGO Logic: storage setup. The carry (state + RTRL traces) is stored from BEFORE each step.
    n, T, N = args.hidden_dim, args.num_steps, args.num_envs
    obs = torch.zeros((T, N) + envs.single_observation_space.shape).to(device)
    actions = torch.zeros((T, N) + envs.single_action_space.shape).to(device)
    logprobs = torch.zeros((T, N)).to(device)
    rewards = torch.zeros((T, N)).to(device)
    dones = torch.zeros((T, N)).to(device)  # done BEFORE step t: the carry is reset at step t
    values = torch.zeros((T, N)).to(device)
    carry_states = torch.zeros((T, N, 2, n)).to(device)
    carry_traces = RTUTraces(*(torch.zeros((T,) + t.shape).to(device) for t in agent.initial_carry(N)[1]))
    print(f"trace buffer: {sum(t.numel() for t in carry_traces) * 4 / 2**20:.0f} MiB")

    # TRY NOT TO MODIFY: start the game
    global_step, first_iteration, wall_time_before = 0, 1, 0.0
    next_obs, _ = envs.reset(seed=args.seed)
    envs.action_space.seed(args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.ones(N).to(device)  # the first step starts an episode
    state, traces = agent.initial_carry(N, device)
    b_inds = np.arange(args.batch_size)
    if checkpoint is not None:  # continue exactly where the checkpoint was taken
        agent.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_env_state(envs, checkpoint["envs"])
        next_obs, next_done, state, *traces = checkpoint["carry"]
        traces = RTUTraces(*traces)
        b_inds = checkpoint["b_inds"]
        random.setstate(checkpoint["rng"][0])
        np.random.set_state(checkpoint["rng"][1])
        torch.set_rng_state(checkpoint["rng"][2])
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        wall_time_before = checkpoint["wall_time"]
        print(f"resumed {run_dir} at global_step={global_step}")
    start_time, start_step = time.time(), global_step
    if args.compile and first_iteration <= args.num_iterations:
        print("compiling the recurrent step and its RTRL gradient (first iteration only)")

    for iteration in range(first_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        rollout_start = time.time()
        for step in range(0, args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            carry_states[step] = state
            for buf, trace in zip(carry_traces, traces):
                buf[step] = trace

            # ALGO LOGIC: action logic (one RTU step; its new traces are the next step's stored carry)
            with torch.inference_mode():
                action, logprob, value, (state, traces) = agent.policy_step(next_obs, (state, traces), next_done)
            values[step] = value
            actions[step] = action
            logprobs[step] = logprob

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            trunc = np.flatnonzero(truncations & ~terminations)  # an env that also terminated is not bootstrapped
            if not args.truncation_as_termination and trunc.size:
                # Bootstrap time-limit truncation with V(final obs), computed from the pre-reset carry.
                final_obs = torch.tensor(np.stack(infos["final_obs"][trunc]), dtype=torch.float32, device=device)
                with torch.inference_mode():
                    idx = torch.as_tensor(trunc, device=device)
                    final_state, _ = agent.step(final_obs, state[idx], RTUTraces(*(t[idx] for t in traces)),
                                                torch.zeros(len(trunc), device=device))
                    reward = reward.copy()
                    reward[trunc] += args.gamma * agent.get_value(final_state).flatten().cpu().numpy()
            rewards[step] = torch.from_numpy(reward)  # from_numpy: no copy, ~3x cheaper than as_tensor per step
            next_obs = torch.from_numpy(next_obs_np).to(device, torch.float32)
            next_done = torch.from_numpy(np.logical_or(terminations, truncations)).to(device, torch.float32)

            if "final_info" in infos and "episode" in infos["final_info"]:
                episode = infos["final_info"]["episode"]
                for i in np.flatnonzero(infos["final_info"]["_episode"]):
                    print(f"global_step={global_step}, episodic_return={episode['r'][i]:.3f}")
                    writer.add_scalar("charts/episodic_return", episode["r"][i], global_step)
                    writer.add_scalar("charts/episodic_length", episode["l"][i], global_step)
        rollout_time = time.time() - rollout_start
        if not (torch.isfinite(values).all() and torch.isfinite(logprobs).all()):
            sys.exit(f"error: non-finite value or log-prob in the rollout before global_step={global_step}; stopping")

        # bootstrap value if not done
        with torch.inference_mode():
            next_state, _ = agent.step(next_obs, state, traces, next_done)
            next_value = agent.get_value(next_state).reshape(1, -1)
            advantages, returns = gae(rewards, values, dones, next_value, next_done, args.gamma, args.gae_lambda)

        # flatten the batch: transitions are shuffled individually (sequence length 1), each with its own carry
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)
        b_dones = dones.reshape(-1)
        b_states = carry_states.flatten(0, 1)
        b_traces = RTUTraces(*(t.flatten(0, 1) for t in carry_traces))

        # Optimizing the policy and value network
        update_start = time.time()
        clipfracs = []
        for epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                end = start + args.minibatch_size
                mb_inds = torch.as_tensor(b_inds[start:end], device=device)

                # re-run ONE step from the stored carry with the current parameters (RTRL backward)
                new_state = agent.step_rtrl(b_obs[mb_inds], b_states, b_traces, mb_inds, b_dones[mb_inds])
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(new_state, b_actions[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    if epoch == 0 and start == 0:  # parameters not updated yet: the ratio must be 1
                        first_ratio_error = (ratio - 1).abs().max()
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                    )
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
                    v_loss = 0.5 * v_loss_max.mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                if not torch.isfinite(loss):
                    sys.exit(f"error: non-finite loss ({loss.item()}) at global_step={global_step}; stopping")

                optimizer.zero_grad()
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    sys.exit(f"error: non-finite gradient norm at global_step={global_step}; stopping")
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break
            if epoch < args.update_epochs - 1 and (args.fresh_carries or args.fresh_targets):
                # the stale-vs-fresh ablation: the next epoch sees carries and/or targets of the current parameters
                with torch.inference_mode():
                    last_carry = (state, traces)
                    if args.fresh_carries:
                        new_values, last_carry = refresh_carries(agent, obs, dones, carry_states, carry_traces)
                    else:  # fresh targets from the stored carries: one step each, without the traces
                        new_values = agent.get_value(agent.state_only_step(b_obs, b_states, b_dones)).reshape(values.shape)
                    if args.fresh_targets:
                        next_state, _ = agent.step(next_obs, *last_carry, next_done)
                        values.copy_(new_values)
                        advantages, returns = gae(rewards, values, dones, agent.get_value(next_state).reshape(1, -1),
                                                  next_done, args.gamma, args.gae_lambda)
                        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
        update_time = time.time() - update_start
        if not all(torch.isfinite(p).all() for p in agent.parameters()):
            sys.exit(f"error: non-finite parameters after the update at global_step={global_step}; stopping")

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("debug/first_minibatch_ratio_error", first_ratio_error.item(), global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        print("SPS:", sps, f"rollout {rollout_time:.2f}s update {update_time:.2f}s")
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/rollout_time", rollout_time, global_step)
        writer.add_scalar("charts/update_time", update_time, global_step)

        if iteration == args.num_iterations or (args.checkpoint_interval and iteration % args.checkpoint_interval == 0):
            writer.flush()  # everything logged up to here is on disk before the checkpoint says so
            save_checkpoint(f"{run_dir}/checkpoint.pt", dict(
                script=os.path.basename(__file__), args=vars(args), model=agent.state_dict(),
                optimizer=optimizer.state_dict(), envs=env_state(envs), carry=(next_obs, next_done, state, *traces),
                b_inds=b_inds, rng=(random.getstate(), np.random.get_state(), torch.get_rng_state()),
                global_step=global_step, iteration=iteration, wall_time=wall_time_before + time.time() - start_time))

    if args.save_model:  # the final checkpoint under CleanRL's name: weights, normalisation statistics and args
        torch.save(torch.load(f"{run_dir}/checkpoint.pt", weights_only=False), f"{run_dir}/{args.exp_name}.cleanrl_model")
        print(f"model saved to {run_dir}/{args.exp_name}.cleanrl_model")
    write_done_marker(run_dir, args, global_step, wall_time_before + time.time() - start_time)
    envs.close()
    writer.close()
