# R2AC: Real-Time Recurrent Actor-Critic with an eLSTM trained by exact RTRL (synchronous, single process).
# Paper: Irie, Gopalakrishnan & Schmidhuber, "Exploring the Promise and Limits of Real-Time Recurrent Learning",
# ICLR 2024. Docs: README.md; the eLSTM equations and its RTRL traces: triton_kernels/elstm.py.
#
# The scheme in one paragraph: num_envs environments are stepped in lock-step for segments of M steps
# (--segment-len). The forward pass of every step is done once, during the rollout, with autograd on: encoder
# (+ the last reward, clipped to [-1, 1], as in the paper's agent) -> one eLSTM step -> output gate -> policy / value
# heads. The eLSTM step is an autograd.Function whose forward also updates the RTRL traces (sensitivities of the
# cell state c_t w.r.t. every eLSTM parameter, carried across segments and reset at episode starts). At the end of
# the segment the on-policy V-trace loss (rho = c = 1, lambda = 1: n-step bootstrapped returns) is formed and ONE
# backward pass + ONE RMSProp step is made. The gradient paths are those of the official learner:
#   - eLSTM parameters: exact RTRL, sum_t e_t * S_t, with e_t = dL/dc_t through the output path of step t only
#     (the traces S_t already cover c_t's dependence on all earlier steps, across segments);
#   - everything below the cell (encoder): the segment loss back-propagated through the cell states unrolled over
#     the segment, eLSTM parameters held fixed, truncated at the segment start (--encoder-grad segment). The
#     official learner does the same by unrolling the cell with autograd and its recurrent weights frozen.
#     --encoder-grad one-step keeps only x_t's direct effect on c_t and on the output gate (c_{t-1} a constant).
# --grad-method tbptt trains the same network by ordinary backprop through the segment, truncated at its start
# (the paper's TBPTT baseline); every other setting is shared.
#
# Online RTRL and parameter updates: the traces of a segment are computed with the parameters in effect while the
# segment was collected and they are NOT recomputed after an update (doing so would need the whole history). This is
# the standard approximation of online RTRL (Williams & Zipser 1989); the gradient of each segment is exact for the
# parameters the segment was run with if the parameters were fixed (tests/test_r2ac_elstm.py proves it).
#
# Losses follow torchbeast (the official R2AC code base): SUMS over time and environments (not means), because the
# RMSProp epsilon 0.01 and the grad-norm clip 40 were tuned for summed losses. The values logged under losses/* are
# per-transition means (the sum divided by M * num_envs) so they are comparable across batch sizes.
import datetime
import json
import os
import pickle
import random
import re
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.utils.tensorboard import SummaryWriter

# non-finite values must reach the script's own checks (one line naming the step), not fail inside a distribution
torch.distributions.Distribution.set_default_validate_args(False)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: triton_kernels
from triton_kernels.elstm import (ELSTMParams, ELSTMStepRTRL, ELSTMTraces, elstm_init_params, elstm_state_step,
                                  elstm_zero_carry)


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
    # a segment is short: one checkpoint (~20 ms) per 50 keeps their cost under 1% even at --segment-len 5
    checkpoint_interval: int = 50
    """save `runs/{run_name}/checkpoint.pt` every N iterations and at the end (0: only at the end)"""
    resume: Optional[str] = None
    """continue the run in this run dir from its checkpoint (its saved args; a larger --total-timesteps extends it)"""

    # Algorithm specific arguments (defaults: the official R2AC / torchbeast configuration)
    env_id: str = "HalfCheetah-P-v5"
    """the id of the environment (MuJoCo -P/-V, MuJoCo v5, Reacher-POMDP-v5 or popgym-*-v0)"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiments"""
    grad_method: Literal["rtrl", "tbptt"] = "rtrl"
    """eLSTM gradient: exact RTRL (traces carried across segments) or BPTT truncated at the segment start"""
    # rtrl only; the eLSTM's own gradient is exact RTRL either way
    encoder_grad: Literal["segment", "one-step"] = "segment"
    """the encoder's gradient under rtrl: back-propagated through the segment's cell states (official) or one-step"""
    learning_rate: float = 6e-4
    """RMSProp's learning rate (the official value; on POPGym only 10x it, 6e-3, learned memory: results/r2ac)"""
    num_envs: int = 32
    """the number of parallel game environments (torchbeast's learner batch size B = 32)"""
    segment_len: int = 50
    """M: steps per env per segment (one optimizer step per segment; paper values 10/50/100)"""
    anneal_lr: bool = True
    """linear learning-rate decay to 0 over total_timesteps (as in torchbeast)"""
    gamma: float = 0.99
    """the discount factor gamma (0 at termination)"""
    ent_coef: float = 0.01
    """entropy cost"""
    baseline_cost: float = 0.5
    """value cost: baseline_cost * 0.5 * squared error"""
    max_grad_norm: float = 40.0
    """the global gradient-norm clipping threshold"""
    rmsprop_alpha: float = 0.99
    """RMSProp smoothing constant"""
    rmsprop_eps: float = 0.01
    """RMSProp epsilon"""
    rmsprop_momentum: float = 0.0
    """RMSProp momentum"""
    reward_scale: float = 1.0
    """multiply every env reward by this before the learner sees it (after normalisation, if any); episodic returns
    are logged unscaled. A diagnostic: POPGym's rewards are +-1/51 per step, DMLab's (the paper's) of order 1"""
    truncation_as_termination: bool = False
    """treat time-limit truncation as termination (the paper's choice) instead of bootstrapping from the final observation"""
    normalize_env: Optional[bool] = None
    """normalise observations and rewards (CleanRL wrappers); default: on for MuJoCo, off for POPGym"""
    obs_norm: Optional[Literal["feature", "pooled"]] = None
    """observation statistics per feature (CleanRL) or one mean and variance pooled over all features (the official
    RTU code's: it runs one unbatched env); default: pooled for POPGym, per feature otherwise"""
    popgym_obs: Literal["baselines", "raw"] = "baselines"
    """POPGym observation: the env's own plus the previous action and a first-step flag (POPGym baselines' wrapping),
    or the env's own only (as in the JAX ports the official RTU code runs)"""
    prev_reward: bool = False
    """append the previous reward (as the agent receives it, 0 at an episode's first step) to the observation"""
    first_step_copy: bool = False
    """diagnostic: append a copy of the observation that is zero after an episode's first step (hands the cue to
    remember to the recurrent layer as an input of its own)"""

    # Model specific arguments
    encoder_dim: int = 64
    """D: width of the observation encoder Dense+tanh (the eLSTM input is D wide, D + 1 with --reward-input)"""
    hidden_dim: int = 188
    """N: number of eLSTM units (2N*D_in + 4N recurrent parameters: 25,192 at D_in = 65, ~24k like the other models)"""
    # the reward the loss sees (normalised with the env), before any truncation bootstrap; 0 before the run's first
    # step; an episode's first step reads the previous episode's final reward, as in torchbeast
    reward_input: bool = True
    """append the last reward, clipped to [-1, 1], to the eLSTM input (the official agent's input)"""
    head_dim: int = 0
    """width of a Dense+tanh hidden layer in the actor and critic heads; 0 = linear heads (official R2AC)"""
    forget_bias: float = 0.0
    """offset added to the initial forget-gate bias b_f (official: 0; > 0 starts with a longer memory)"""

    # to be filled in runtime
    batch_size: int = 0
    """the number of transitions per segment, num_envs * segment_len (computed in runtime)"""
    num_iterations: int = 0
    """the number of segments / optimizer steps (computed in runtime)"""


# ---------------------------------------------------------------------------------------------------------------
# Environments -- identical to algos/ppo_rtu_rtrl.py
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
# Model: encoder -> eLSTM (exact RTRL or truncated BPTT) -> output gate -> actor / critic heads
# The eLSTM step with its RTRL backward (ELSTMStepRTRL) and without traces (elstm_state_step) is in
# triton_kernels/elstm.py, shared with copy_task_elstm.py.
# ---------------------------------------------------------------------------------------------------------------
def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


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
        self.reward_input, self.encoder_grad = args.reward_input, args.encoder_grad
        N = self.hidden_dim = args.hidden_dim
        D = self.input_dim = args.encoder_dim + int(args.reward_input)  # the eLSTM's input x_t: [encoder(obs), r]
        self.encoder = nn.Sequential(layer_init(nn.Linear(obs_dim, args.encoder_dim)), nn.Tanh())
        self.F, self.Z, self.w_f, self.w_z, self.b_f, self.b_z = (nn.Parameter(p) for p in elstm_init_params(N, D))
        with torch.no_grad():
            self.b_f.add_(args.forget_bias)
        self.output_gate = nn.Linear(D + N, N)  # o_t = sigmoid(W_o [x_t, c_t] + b_o), PyTorch default init (official)

        def head(out_dim, std):
            if args.head_dim == 0:
                return layer_init(nn.Linear(N, out_dim), std=std)
            return nn.Sequential(layer_init(nn.Linear(N, args.head_dim)), nn.Tanh(), layer_init(nn.Linear(args.head_dim, out_dim), std=std))

        self.critic = head(1, 1.0)
        if self.continuous:
            action_dim = int(np.prod(envs.single_action_space.shape))
            self.actor = head(action_dim, 0.01)
            self.actor_logstd = nn.Parameter(torch.zeros(1, action_dim))  # state-independent log-std, init 0
        else:
            self.actor = head(envs.single_action_space.n, 0.01)

    def elstm_params(self):
        return ELSTMParams(self.F, self.Z, self.w_f, self.w_z, self.b_f, self.b_z)

    def recurrent_parameter_count(self):
        return sum(p.numel() for p in self.elstm_params())

    def zero_carry(self, batch, device):
        p = self.F
        return elstm_zero_carry(batch, self.hidden_dim, self.input_dim, dtype=p.dtype, device=device)

    def core_step(self, obs, last_reward, c, traces, reset, grad_method):
        """encoder (+ last reward) -> eLSTM step -> output gate. Returns (h_t, c_t, new traces or None).

        last_reward (B,): the reward of the previous step, as the loss uses it (clipped here; unused without
        --reward-input). The caller detaches c at segment starts (truncation).
        rtrl: the RTRL backward gives the eLSTM gradients (traces must be given); the layers below get the segment
        loss through the unrolled states (--encoder-grad segment) or, with c_{t-1} a constant, the one-step gradient.
        tbptt: ordinary autograd through c_{t-1}; traces are ignored.
        """
        x = self.encoder(obs)
        if self.reward_input:
            x = torch.cat([x, last_reward.to(x.dtype).clamp(-1.0, 1.0)[:, None]], dim=-1)
        if grad_method == "rtrl":
            state = c if self.encoder_grad == "segment" else c.detach()
            c_out, c, *new = ELSTMStepRTRL.apply(x, *self.elstm_params(), state, *traces, reset)
            traces = ELSTMTraces(*new)
        else:
            c_out, traces = elstm_state_step(self.elstm_params(), x, c, reset), None
            c = c_out
        h = torch.sigmoid(self.output_gate(torch.cat([x, c_out], dim=-1))) * c_out
        return h, c, traces

    def initial_carry(self, batch, device=None):
        """The carry before an episode's first step: a zero cell state (acting needs no RTRL traces)."""
        return torch.zeros(batch, self.hidden_dim, dtype=self.F.dtype, device=device)

    @torch.no_grad()
    def policy_step(self, obs, carry, reset, last_reward=None):
        """One step of the policy without gradient: the eLSTM step from the cell state `carry`, a sampled action
        with its log-prob, and the value. For evaluation only: the training rollout keeps every step's autograd
        graph (and, under RTRL, the traces) for the segment's update, so it uses core_step and act.
        last_reward (B,): the previous step's reward, as in training (required with --reward-input)."""
        if self.reward_input and last_reward is None:
            raise ValueError("this agent reads the last reward (--reward-input): pass policy_step(..., last_reward=)")
        h, c, _ = self.core_step(obs, last_reward, carry, None, reset, "tbptt")
        action, logprob = sample_action(self.actor(h), self.actor_logstd if self.continuous else None)
        return action, logprob, self.critic(h).flatten(), c

    def get_value(self, h):
        return self.critic(h).squeeze(-1)

    def act(self, h):
        """Sample an action; returns (action, log-prob, entropy, value), the last three differentiable."""
        value = self.critic(h).squeeze(-1)
        out = self.actor(h)
        # the sampler never raises on non-finite outputs: they reach the loss check, which names the step
        if self.continuous:
            logstd = self.actor_logstd.expand_as(out)
            action, _ = sample_action(out.detach(), logstd.detach())
            logprob = self.gaussian_logprob(out, logstd, action)
            entropy = (0.5 + 0.5 * np.log(2 * np.pi) + logstd).sum(-1)
            return action, logprob, entropy, value
        action, _ = sample_action(out.detach())
        logp_all = torch.log_softmax(out, dim=-1)
        logprob = logp_all.gather(-1, action[:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return action, logprob, entropy, value

    def evaluate(self, h, action):
        """(log-prob of the given action, entropy, value): used by the tests."""
        value = self.critic(h).squeeze(-1)
        if self.continuous:
            mean = self.actor(h)
            logstd = self.actor_logstd.expand_as(mean)
            return self.gaussian_logprob(mean, logstd, action), (0.5 + 0.5 * np.log(2 * np.pi) + logstd).sum(-1), value
        logp_all = torch.log_softmax(self.actor(h), dim=-1)
        return logp_all.gather(-1, action.long()[..., None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1), value

    @staticmethod
    def gaussian_logprob(mean, logstd, action):
        return (-((action - mean) ** 2) / (2 * torch.exp(2 * logstd)) - logstd - 0.5 * np.log(2 * np.pi)).sum(-1)


def r2ac_loss(logprobs, entropies, values, rewards, dones_after, bootstrap_value, gamma, ent_coef, baseline_cost):
    """Segment loss, summed over time and envs like torchbeast.

    On-policy V-trace (rho = c = 1, lambda = 1): vs_t = r_t + gamma*(1 - d_t)*vs_{t+1}, vs_M = V(x_M) (bootstrap);
    policy-gradient advantage r_t + gamma*(1 - d_t)*vs_{t+1} - V(x_t); d_t = episode ended at step t (done after).
    Shapes (M, B); bootstrap_value (B,). Returns (loss, pg_loss, value_loss, entropy_sum).
    """
    with torch.no_grad():
        discounts = gamma * (1.0 - dones_after)
        vs = torch.empty_like(rewards)
        acc = bootstrap_value
        for t in reversed(range(rewards.shape[0])):
            acc = rewards[t] + discounts[t] * acc
            vs[t] = acc
        vs_next = torch.cat([vs[1:], bootstrap_value[None]], dim=0)
        pg_advantages = rewards + discounts * vs_next - values.detach()
    pg_loss = -(logprobs * pg_advantages).sum()
    value_loss = baseline_cost * 0.5 * ((vs - values) ** 2).sum()
    entropy = entropies.sum()
    return pg_loss + value_loss - ent_coef * entropy, pg_loss, value_loss, entropy


def check_args(args):
    """Exit with one line on a size or rate no run can use, before anything is created."""
    for name in ("total_timesteps", "num_envs", "segment_len", "encoder_dim", "hidden_dim", "learning_rate",
                 "max_grad_norm", "rmsprop_eps", "reward_scale"):
        if not getattr(args, name) > 0:
            sys.exit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("head_dim", "ent_coef", "baseline_cost", "rmsprop_momentum", "checkpoint_interval"):
        if not getattr(args, name) >= 0:
            sys.exit(f"error: --{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("gamma", "rmsprop_alpha"):
        if not 0 <= getattr(args, name) <= 1:
            sys.exit(f"error: --{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if not np.isfinite(args.forget_bias):
        sys.exit(f"error: --forget-bias must be finite, got {args.forget_bias}")
    if args.grad_method == "tbptt" and args.encoder_grad != "segment":
        sys.exit("error: --encoder-grad one-step needs --grad-method rtrl (truncated BPTT back-propagates the segment)")
    args.batch_size = int(args.num_envs * args.segment_len)
    args.num_iterations = args.total_timesteps // args.batch_size
    if args.num_iterations < 1:
        sys.exit(f"error: total_timesteps={args.total_timesteps} is smaller than one segment ({args.batch_size} steps)")


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
    saved, default = Args(**checkpoint["args"]), Args()
    # a run saved before these flags existed had no reward input and, under RTRL, the one-step encoder gradient (the
    # observation options' defaults are what such a run used)
    if "reward_input" not in checkpoint["args"]:
        saved.reward_input = False
    if "encoder_grad" not in checkpoint["args"]:
        saved.encoder_grad = "one-step" if saved.grad_method == "rtrl" else "segment"
    for f in fields(Args):
        given = getattr(args, f.name)
        if f.name in ("resume", "total_timesteps", "batch_size", "num_iterations"):
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
    normalize = args.normalize_env if args.normalize_env is not None else family != "popgym"
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
    # and the final observation sits in infos["final_obs"]; no fake transition is ever inserted.
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name, args.gamma, normalize, args.obs_norm, args.popgym_obs,
                  args.first_step_copy, args.prev_reward) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    agent = Agent(envs, args).to(device)
    optimizer = optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=args.rmsprop_alpha,
                              eps=args.rmsprop_eps, momentum=args.rmsprop_momentum)
    num_recurrent = agent.recurrent_parameter_count()
    print(f"recurrent parameters: {num_recurrent}")
    if checkpoint is None:
        writer.add_text("model/recurrent_parameters", str(num_recurrent))

    # ALGO Logic: storage setup (per segment). The differentiable per-step outputs live in the autograd graph.
    M, B = args.segment_len, args.num_envs
    rewards = torch.zeros((M, B)).to(device)
    dones_after = torch.zeros((M, B)).to(device)  # episode ended at step t: discount 0 after step t
    logprobs, entropies, values = [None] * M, [None] * M, [None] * M
    recent_returns = deque(maxlen=100)

    # TRY NOT TO MODIFY: start the game
    global_step, first_iteration, wall_time_before = 0, 1, 0.0
    next_obs, _ = envs.reset(seed=args.seed)
    envs.action_space.seed(args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.ones(B).to(device)  # done BEFORE the step: the first step starts an episode (resets the carry)
    last_reward = torch.zeros(B).to(device)  # the core's reward input; NOT reset at episode starts (as torchbeast)
    c, traces = agent.zero_carry(B, device)
    if args.grad_method == "tbptt":
        traces = None
    if checkpoint is not None:  # continue exactly where the checkpoint was taken
        agent.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_env_state(envs, checkpoint["envs"])
        next_obs, next_done, c, *traces = checkpoint["carry"]
        traces = ELSTMTraces(*traces) if traces else None
        last_reward = checkpoint.get("last_reward", last_reward)  # absent from runs without the reward input
        recent_returns.extend(checkpoint["recent_returns"])
        random.setstate(checkpoint["rng"][0])
        np.random.set_state(checkpoint["rng"][1])
        torch.set_rng_state(checkpoint["rng"][2])
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        wall_time_before = checkpoint["wall_time"]
        print(f"resumed {run_dir} at global_step={global_step}")
    start_time, start_step = time.time(), global_step

    for iteration in range(first_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # the carry crosses the segment boundary without a graph: every backward through the unrolled states (TBPTT,
        # and the encoder's under RTRL) is truncated here; RTRL's traces carry on
        c = c.detach()
        segment_returns = []
        rollout_start = time.time()
        for step in range(M):
            global_step += B
            # ALGO LOGIC: one forward pass per step, kept for the segment's backward pass
            h, c, traces = agent.core_step(next_obs, last_reward, c, traces, next_done, args.grad_method)
            action, logprobs[step], entropies[step], values[step] = agent.act(h)

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            reward = reward * args.reward_scale
            step_reward = torch.as_tensor(reward, dtype=torch.float32, device=device).view(-1)  # before bootstrapping
            trunc = np.flatnonzero(truncations & ~terminations)  # an env that also terminated is not bootstrapped
            if not args.truncation_as_termination and trunc.size:
                # Bootstrap time-limit truncation with V(final obs), computed from the pre-reset carry.
                final_obs = torch.tensor(np.stack(infos["final_obs"][trunc]), dtype=torch.float32, device=device)
                with torch.no_grad():
                    idx = torch.as_tensor(trunc, device=device)
                    final_h, _, _ = agent.core_step(final_obs, step_reward[idx], c[idx], None,
                                                    torch.zeros(len(trunc), device=device), "tbptt")
                    reward = reward.copy()
                    reward[trunc] += args.gamma * agent.get_value(final_h).cpu().numpy()
            next_done_np = np.logical_or(terminations, truncations)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device).view(-1)
            next_obs = torch.Tensor(next_obs_np).to(device)
            next_done = torch.Tensor(next_done_np).to(device)
            dones_after[step] = next_done
            last_reward = step_reward

            if "final_info" in infos and "episode" in infos["final_info"]:
                episode = infos["final_info"]["episode"]
                for i in np.flatnonzero(infos["final_info"]["_episode"]):
                    print(f"global_step={global_step}, episodic_return={episode['r'][i]:.3f}")
                    writer.add_scalar("charts/episodic_return", episode["r"][i], global_step)
                    writer.add_scalar("charts/episodic_length", episode["l"][i], global_step)
                    segment_returns.append(float(episode["r"][i]))
        rollout_time = time.time() - rollout_start

        # bootstrap value of the next observation (one step from the carry, no gradient)
        update_start = time.time()
        with torch.no_grad():
            next_h, _, _ = agent.core_step(next_obs, last_reward, c, None, next_done, "tbptt")
            bootstrap_value = agent.get_value(next_h)
        loss, pg_loss, v_loss, entropy = r2ac_loss(
            torch.stack(logprobs), torch.stack(entropies), torch.stack(values), rewards, dones_after,
            bootstrap_value, args.gamma, args.ent_coef, args.baseline_cost,
        )
        if not torch.isfinite(loss):
            sys.exit(f"error: non-finite loss ({loss.item()}) at global_step={global_step}; stopping")
        optimizer.zero_grad()
        loss.backward()  # RTRL: each step's backward reads its own traces; TBPTT: backprop through the segment
        grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
        if not torch.isfinite(grad_norm):
            sys.exit(f"error: non-finite gradient norm at global_step={global_step}; stopping")
        optimizer.step()
        update_time = time.time() - update_start
        if not all(torch.isfinite(p).all() for p in agent.parameters()):
            sys.exit(f"error: non-finite parameters after the update at global_step={global_step}; stopping")
        logprobs, entropies, values = [None] * M, [None] * M, [None] * M  # free the graph

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        n = args.batch_size
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item() / n, global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item() / n, global_step)
        writer.add_scalar("losses/entropy", entropy.item() / n, global_step)
        writer.add_scalar("losses/grad_norm", grad_norm.item(), global_step)
        recent_returns.extend(segment_returns)
        if segment_returns:
            writer.add_scalar("charts/segment_mean_episodic_return", np.mean(segment_returns), global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        print(f"SPS: {sps} rollout {rollout_time:.2f}s update {update_time:.2f}s "
              f"losses: value {v_loss.item() / n:.6f} policy {pg_loss.item() / n:.6f} entropy {entropy.item() / n:.6f}")
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/rollout_time", rollout_time, global_step)
        writer.add_scalar("charts/update_time", update_time, global_step)

        if iteration == args.num_iterations or (args.checkpoint_interval and iteration % args.checkpoint_interval == 0):
            writer.flush()  # everything logged up to here is on disk before the checkpoint says so
            save_checkpoint(f"{run_dir}/checkpoint.pt", dict(
                script=os.path.basename(__file__), args=vars(args), model=agent.state_dict(),
                optimizer=optimizer.state_dict(), envs=env_state(envs),
                carry=(next_obs, next_done, c.detach(), *(traces or ())), last_reward=last_reward,
                recent_returns=list(recent_returns),
                rng=(random.getstate(), np.random.get_state(), torch.get_rng_state()),
                global_step=global_step, iteration=iteration, wall_time=wall_time_before + time.time() - start_time))

    if recent_returns:
        print(f"final: global_step={global_step} mean_episodic_return(last {len(recent_returns)} episodes)="
              f"{np.mean(recent_returns):.4f} wall_time={wall_time_before + time.time() - start_time:.1f}s")
    if args.save_model:  # the final checkpoint under CleanRL's name: weights, normalisation statistics and args
        torch.save(torch.load(f"{run_dir}/checkpoint.pt", weights_only=False), f"{run_dir}/{args.exp_name}.cleanrl_model")
        print(f"model saved to {run_dir}/{args.exp_name}.cleanrl_model")
    write_done_marker(run_dir, args, global_step, wall_time_before + time.time() - start_time)
    envs.close()
    writer.close()
