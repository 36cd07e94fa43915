# R2AC: Real-Time Recurrent Actor-Critic with an eLSTM trained by exact RTRL (synchronous, single process).
# Docs: README.md; equations: SPEC sections 2.3 (eLSTM and its RTRL) and 5 (R2AC).
#
# The scheme in one paragraph: num_envs environments are stepped in lock-step for segments of M steps
# (--segment-len). The forward pass of every step is done once, during the rollout, with autograd on: encoder ->
# one eLSTM step -> output gate -> policy / value heads. The eLSTM step is an autograd.Function whose forward also
# updates the RTRL traces (sensitivities of the cell state c_t w.r.t. every eLSTM parameter, carried across segments
# and reset at episode starts), and whose backward turns delta_t = dL/dc_t (the loss of step t through its own output
# path only, since c_{t-1} enters the step as a constant) into exact parameter gradients sum_b delta_t * S_t.
# At the end of the segment the on-policy V-trace loss (rho = c = 1, lambda = 1: n-step bootstrapped returns) is
# formed and ONE backward pass + ONE RMSProp step is made. The encoder gets the one-step gradient (through x_t's
# direct effect on c_t and on the output gate). --grad-method tbptt trains the same network by ordinary backprop
# through the segment, truncated at its start (the paper's TBPTT baseline).
#
# Online RTRL and parameter updates: the traces of a segment are computed with the parameters in effect while the
# segment was collected and they are NOT recomputed after an update (doing so would need the whole history). This is
# the standard approximation of online RTRL (Williams & Zipser 1989); the gradient of each segment is exact for the
# parameters the segment was run with if the parameters were fixed (tests/test_r2ac_elstm.py proves it).
#
# Losses follow torchbeast (the official R2AC code base): SUMS over time and environments (not means), because the
# RMSProp epsilon 0.01 and the grad-norm clip 40 were tuned for summed losses. The values logged under losses/* are
# per-transition means (the sum divided by M * num_envs) so they are comparable across batch sizes.
import os
import random
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: triton_kernels
from triton_kernels.elstm import ELSTMParams, ELSTMTraces, elstm_grads, elstm_init_params, elstm_step, elstm_zero_carry


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

    # Algorithm specific arguments (defaults: the official R2AC / torchbeast configuration, SPEC section 5)
    env_id: str = "HalfCheetah-P-v5"
    """the id of the environment (MuJoCo -P/-V, MuJoCo v5, Reacher-POMDP-v5 or popgym-*-v0)"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiments"""
    grad_method: Literal["rtrl", "tbptt"] = "rtrl"
    """eLSTM gradient: exact RTRL (traces carried across segments) or BPTT truncated at the segment start"""
    learning_rate: float = 6e-4
    """the learning rate of the RMSProp optimizer"""
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
    truncation_as_termination: bool = False
    """treat time-limit truncation as termination (the paper's choice) instead of bootstrapping from the final observation"""
    normalize_env: Optional[bool] = None
    """normalise observations and rewards (CleanRL wrappers); default: on for MuJoCo, off for POPGym (SPEC 7)"""

    # Model specific arguments
    encoder_dim: int = 64
    """D: width of the observation encoder Dense+tanh, the input of the eLSTM"""
    hidden_dim: int = 188
    """N: number of eLSTM units (2ND + 4N = 24,816 recurrent parameters at D = 64, the SPEC 2.5 budget)"""
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
# Environments (SPEC section 7) -- identical to algos/ppo_rtu_rtrl.py
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


class ReacherPOMDP(gym.Wrapper):
    """Reacher-POMDP-v5: the target is visible at the first step of an episode only (obs 4,5,8,9 zero afterwards)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = obs.copy()
        obs[REACHER_HIDDEN_INDICES] = 0.0
        return obs, reward, terminated, truncated, info


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


def make_env(env_id, idx, capture_video, run_name, gamma, normalize):
    family = env_family(env_id)

    def thunk():
        render_mode = "rgb_array" if capture_video and idx == 0 else None
        if family == "popgym":
            from popgym import wrappers as pw

            env = gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)()  # the raw popgym class
            # POPGym baselines' wrapping: previous action + antialias flag, then one-hot flattening.
            env = pw.Flatten(pw.Antialias(pw.PreviousAction(env)))
            if isinstance(env.action_space, gym.spaces.MultiDiscrete):
                env = pw.DiscreteAction(env)
        elif family == "mujoco_pv":
            name, variant = env_id.split("-")[:2]
            kwargs = {"include_cfrc_ext_in_observation": False} if name == "Ant" else {}
            env = gym.make(f"{name}-v5", render_mode=render_mode, **kwargs)
            env = KeepObservationIndices(env, MUJOCO_PV_INDICES[name][variant == "V"])
        elif family == "reacher_pomdp":
            env = ReacherPOMDP(gym.make("Reacher-v5", render_mode=render_mode))
        else:
            kwargs = {"include_cfrc_ext_in_observation": False} if env_id.startswith("Ant-") else {}
            env = gym.make(env_id, render_mode=render_mode, **kwargs)
        if render_mode is not None:
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        env = gym.wrappers.FlattenObservation(env)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        if isinstance(env.action_space, gym.spaces.Box):
            env = gym.wrappers.ClipAction(env)
        if normalize:
            env = gym.wrappers.NormalizeObservation(env)
            env = gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10), env.observation_space)
            env = gym.wrappers.NormalizeReward(env, gamma=gamma)
            env = gym.wrappers.TransformReward(env, lambda reward: np.clip(reward, -10, 10))
        return env

    return thunk


# ---------------------------------------------------------------------------------------------------------------
# Model: encoder -> eLSTM (exact RTRL or truncated BPTT) -> output gate -> actor / critic heads
# ---------------------------------------------------------------------------------------------------------------
def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class ELSTMStepRTRL(torch.autograd.Function):
    """One eLSTM step (SPEC 2.3) whose backward is exact RTRL.

    forward: new cell state c_t and new traces from the carry (c_{t-1}, traces) of the previous step; the traces are
    returned as non-differentiable outputs (they are the carry of the next step).
    backward: the eLSTM parameters get sum_b delta_t * S_t from the NEW traces (they summarise the whole history, so
    nothing is unrolled); x_t gets the one-step gradient with c_{t-1} held constant. c_{t-1} gets no gradient.
    """

    @staticmethod
    def forward(ctx, x, F, Z, w_f, w_z, b_f, b_z, state, tr_F, tr_Z, tr_wf, tr_wz, tr_bf, tr_bz, reset):
        params = ELSTMParams(F, Z, w_f, w_z, b_f, b_z)
        c, new = elstm_step(params, x, state, ELSTMTraces(tr_F, tr_Z, tr_wf, tr_wz, tr_bf, tr_bz), reset)
        ctx.save_for_backward(x, F, Z, w_f, w_z, b_f, b_z, state, reset, *new)
        ctx.mark_non_differentiable(*new)
        return (c, *new)

    @staticmethod
    def backward(ctx, delta, *unused_trace_grads):
        x, F, Z, w_f, w_z, b_f, b_z, state, reset, *new = ctx.saved_tensors
        params = ELSTMParams(F, Z, w_f, w_z, b_f, b_z)
        grad_x, grads = elstm_grads(params, x, state, reset, ELSTMTraces(*new), delta)
        return (grad_x if ctx.needs_input_grad[0] else None, *grads) + (None,) * 8


def elstm_cell(params: ELSTMParams, x, c_prev, reset):
    """Plain differentiable eLSTM step (no traces): truncated BPTT, and value-only evaluations."""
    c_prev = c_prev * (1.0 - reset.to(c_prev.dtype))[:, None]
    f = torch.sigmoid(x @ params.F.T + params.w_f * c_prev + params.b_f)
    z = torch.tanh(x @ params.Z.T + params.w_z * c_prev + params.b_z)
    return f * c_prev + (1 - f) * z


class Agent(nn.Module):
    def __init__(self, envs, args):
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        self.continuous = isinstance(envs.single_action_space, gym.spaces.Box)
        self.hidden_dim, self.encoder_dim = args.hidden_dim, args.encoder_dim
        N, D = args.hidden_dim, args.encoder_dim
        self.encoder = nn.Sequential(layer_init(nn.Linear(obs_dim, D)), nn.Tanh())
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
        return elstm_zero_carry(batch, self.hidden_dim, self.encoder_dim, dtype=p.dtype, device=device)

    def core_step(self, obs, c, traces, reset, grad_method):
        """encoder -> eLSTM step -> output gate. Returns (h_t, c_t, new traces or None).

        rtrl: c_{t-1} enters as a constant, the RTRL backward gives the eLSTM gradients; traces must be given.
        tbptt: ordinary autograd through c_{t-1} (the caller detaches c at segment starts); traces are ignored.
        """
        x = self.encoder(obs)
        if grad_method == "rtrl":
            c, *new = ELSTMStepRTRL.apply(x, *self.elstm_params(), c.detach(), *traces, reset)
            traces = ELSTMTraces(*new)
        else:
            c, traces = elstm_cell(self.elstm_params(), x, c, reset), None
        h = torch.sigmoid(self.output_gate(torch.cat([x, c], dim=-1))) * c
        return h, c, traces

    def get_value(self, h):
        return self.critic(h).squeeze(-1)

    def act(self, h):
        """Sample an action; returns (action, log-prob, entropy, value), the last three differentiable."""
        value = self.critic(h).squeeze(-1)
        if self.continuous:
            mean = self.actor(h)
            logstd = self.actor_logstd.expand_as(mean)
            with torch.no_grad():
                action = mean + logstd.exp() * torch.randn_like(mean)
            logprob = self.gaussian_logprob(mean, logstd, action)
            entropy = (0.5 + 0.5 * np.log(2 * np.pi) + logstd).sum(-1)
            return action, logprob, entropy, value
        logp_all = torch.log_softmax(self.actor(h), dim=-1)
        with torch.no_grad():
            action = torch.multinomial(logp_all.exp(), 1)
        logprob = logp_all.gather(-1, action).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return action.squeeze(-1), logprob, entropy, value

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
    """Segment loss (SPEC 5), summed over time and envs like torchbeast.

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


def save_model(path, agent, envs):
    """Weights AND the observation-normalisation statistics the policy was trained with (SPEC 10)."""
    obs_rms = []
    for env in envs.envs:
        while not isinstance(env, gym.wrappers.NormalizeObservation) and hasattr(env, "env"):
            env = env.env
        if isinstance(env, gym.wrappers.NormalizeObservation):
            obs_rms.append({"mean": env.obs_rms.mean, "var": env.obs_rms.var, "count": env.obs_rms.count})
    torch.save({"model": agent.state_dict(), "obs_rms": obs_rms}, path)
    print(f"model saved to {path}")


if __name__ == "__main__":
    args = tyro.cli(Args)
    args.batch_size = int(args.num_envs * args.segment_len)
    args.num_iterations = args.total_timesteps // args.batch_size
    if args.num_iterations < 1:
        sys.exit(f"error: total_timesteps={args.total_timesteps} is smaller than one segment ({args.batch_size} steps)")
    family = env_family(args.env_id)  # exits with a clear message on an unknown id
    if args.capture_video and family == "popgym":
        sys.exit("error: --capture-video needs rendering, which popgym envs do not provide")
    normalize = args.normalize_env if args.normalize_env is not None else family != "popgym"
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, monitor_gym=True, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}")
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
    # and the final observation sits in infos["final_obs"]; no fake transition is ever inserted (SPEC 10).
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name, args.gamma, normalize) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    agent = Agent(envs, args).to(device)
    optimizer = optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=args.rmsprop_alpha,
                              eps=args.rmsprop_eps, momentum=args.rmsprop_momentum)
    num_recurrent = agent.recurrent_parameter_count()
    print(f"recurrent parameters: {num_recurrent}")
    writer.add_text("model/recurrent_parameters", str(num_recurrent))

    # ALGO Logic: storage setup (per segment). The differentiable per-step outputs live in the autograd graph.
    M, B = args.segment_len, args.num_envs
    rewards = torch.zeros((M, B)).to(device)
    dones_after = torch.zeros((M, B)).to(device)  # episode ended at step t: discount 0 after step t
    logprobs, entropies, values = [None] * M, [None] * M, [None] * M
    recent_returns = deque(maxlen=100)

    # TRY NOT TO MODIFY: start the game
    global_step = 0
    start_time = time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    envs.action_space.seed(args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.ones(B).to(device)  # done BEFORE the step: the first step starts an episode (resets the carry)
    c, traces = agent.zero_carry(B, device)
    if args.grad_method == "tbptt":
        traces = None

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # the carry crosses the segment boundary without a graph: BPTT is truncated here; RTRL's traces carry on
        c = c.detach()
        segment_returns = []
        rollout_start = time.time()
        for step in range(M):
            global_step += B
            # ALGO LOGIC: one forward pass per step, kept for the segment's backward pass
            h, c, traces = agent.core_step(next_obs, c, traces, next_done, args.grad_method)
            action, logprobs[step], entropies[step], values[step] = agent.act(h)

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            if not args.truncation_as_termination and truncations.any():
                # Bootstrap time-limit truncation with V(final obs), computed from the pre-reset carry.
                trunc = np.flatnonzero(truncations & ~terminations)
                final_obs = torch.tensor(np.stack(infos["final_obs"][trunc]), dtype=torch.float32, device=device)
                with torch.no_grad():
                    idx = torch.as_tensor(trunc, device=device)
                    final_h, _, _ = agent.core_step(final_obs, c[idx], None, torch.zeros(len(trunc), device=device), "tbptt")
                    reward = reward.copy()
                    reward[trunc] += args.gamma * agent.get_value(final_h).cpu().numpy()
            next_done_np = np.logical_or(terminations, truncations)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device).view(-1)
            next_obs = torch.Tensor(next_obs_np).to(device)
            next_done = torch.Tensor(next_done_np).to(device)
            dones_after[step] = next_done

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
            next_h, _, _ = agent.core_step(next_obs, c, None, next_done, "tbptt")
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
        optimizer.step()
        update_time = time.time() - update_start
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
        sps = int(global_step / (time.time() - start_time))
        print(f"SPS: {sps} rollout {rollout_time:.2f}s update {update_time:.2f}s "
              f"losses: value {v_loss.item() / n:.6f} policy {pg_loss.item() / n:.6f} entropy {entropy.item() / n:.6f}")
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/rollout_time", rollout_time, global_step)
        writer.add_scalar("charts/update_time", update_time, global_step)

    if recent_returns:
        print(f"final: global_step={global_step} mean_episodic_return(last {len(recent_returns)} episodes)="
              f"{np.mean(recent_returns):.4f} wall_time={time.time() - start_time:.1f}s")
    if args.save_model:
        save_model(f"runs/{run_name}/{args.exp_name}.cleanrl_model", agent, envs)

    envs.close()
    writer.close()
