# Copy task diagnostic (Irie et al. 2024): an eLSTM trained FULLY ONLINE by exact RTRL (one gradient step per
# token) learns to reproduce a random bit pattern. --grad-method bptt trains the same model by full BPTT for comparison.
# Docs: README.md; the eLSTM and its RTRL sensitivities: triton_kernels/elstm.py (Irie et al. 2024, arXiv 2305.19044).
#
# Protocol (the official generator's, IDSIA/rtrl-elstm diagnostic/utils/copy_task_generator.py):
#   vocabulary of inputs, one-hot D = 3: 0 = bit 0, 1 = bit 1, 2 = the "blank / recall" token.
#   A sequence with a pattern of length l ~ U{1..L} (b_1..b_l uniform bits) has 2l steps:
#       input : b_1 ... b_l  2 ... 2        (l blanks: the first blank is the cue that the recall phase starts)
#       target: -   ...  -   b_1 ... b_l    (loss and accuracy at the l recall steps only)
#   The recurrent state (and, for RTRL, the traces) is zero at the start of every sequence. The output layer has
#   2 classes (bit 0 / bit 1).
#   Sequence accuracy (the stopping criterion): a sequence counts as correct iff all its l recalled bits are correct
#   (argmax). Training stops the first time the fixed validation set (--val-size sequences drawn with --val-seed,
#   independent of --seed) is recalled with 100% sequence accuracy. It is evaluated every --eval-every training
#   sequences, as a batch aligned at the first step and run for 2*max(l) steps.
#
# Learning rules:
#   rtrl: fully online on B = --batch-size independent STREAMS of sequences: each stream starts its next sequence
#         right after the previous one ends (state and traces reset there, the kernel's `reset` flag), so no step is
#         padding. After EVERY step, the loss of that step (cross-entropy averaged over the streams that are in a
#         recall phase) is backpropagated to c_t only, the RTRL traces turn it into the exact gradient of the eLSTM
#         parameters, and the optimizer makes a step (steps where no stream is recalling make no update). The traces
#         are computed with the parameters in effect at each step (standard online RTRL: they are not recomputed
#         after a parameter change). The official code instead pads aligned batches to length 2L and also updates
#         after every token; streaming gives the same per-token updates without the padding steps.
#   bptt: aligned batches of B sequences run for 2*max(l) steps (finished sequences receive blanks without target,
#         as in the official padding); the loss (cross-entropy averaged over all recall tokens of the batch) is
#         backpropagated through all steps and ONE optimizer step is made per batch (the official copy_task_main).
# Optimizer: Adam, betas (0.9, 0.995), eps 1e-9 as in the official code; global grad-norm clip --max-grad-norm.
# Every parameter except the eLSTM (output gate, output layer) is trained by ordinary backprop at each update.
import csv
import datetime
import json
import math
import os
import pickle
import random
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn
import tyro
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: triton_kernels
from triton_kernels.elstm import (ELSTMParams, ELSTMStepRTRL, ELSTMTraces, elstm_init_params, elstm_state_step,
                                  elstm_zero_carry)

BLANK = 2  # the blank / recall input token
IGNORE = -1  # target of steps without a loss


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (initialisation and training data)"""
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
    checkpoint_interval: int = 1
    """save `runs/{run_name}/checkpoint.pt` every N evaluations and at the end (0: only at the end)"""
    resume: Optional[str] = None
    """continue the run in this run dir from its checkpoint (its saved args; a larger --max-updates extends it)"""

    # Task
    max_len: int = 50
    """L: pattern lengths are uniform in [1, L]"""
    val_size: int = 1000
    """number of sequences in the fixed validation set"""
    val_seed: int = 12345
    """seed of the validation set (fixed, independent of --seed)"""

    # Learning
    grad_method: Literal["rtrl", "bptt"] = "rtrl"
    """rtrl: fully online, one update per token with a target; bptt: backprop through the batch, one update per batch"""
    hidden_dim: int = 256
    """N: number of eLSTM units"""
    batch_size: int = 128
    """number of sequences processed in parallel"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    max_grad_norm: float = 1.0
    """global gradient-norm clipping threshold (0 = no clipping)"""
    max_updates: int = 2_000_000
    """stop after this many optimizer steps if 100% validation sequence accuracy is not reached"""
    max_seconds: float = 0.0
    """stop after this much wall time in seconds (0 = no limit)"""
    eval_every: int = 12_800
    """evaluate on the validation set every this many training sequences"""


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def make_batch(rng: np.random.Generator, batch_size: int, max_len: int):
    """Returns (inputs (T, B) int64, targets (T, B) int64 with IGNORE where no loss, lengths (B,)); T = 2*max(l)."""
    lengths = rng.integers(1, max_len + 1, size=batch_size)
    bits = rng.integers(0, 2, size=(max_len, batch_size))
    T = 2 * int(lengths.max())
    t = np.arange(T)[:, None]
    inputs = np.where(t < lengths, bits[np.minimum(t, max_len - 1), np.arange(batch_size)], BLANK)
    recall = (t >= lengths) & (t < 2 * lengths)
    src = np.clip(t - lengths, 0, max_len - 1)
    targets = np.where(recall, bits[src, np.arange(batch_size)], IGNORE)
    return torch.as_tensor(inputs), torch.as_tensor(targets), lengths


class SequenceStreams:
    """B independent streams of copy-task sequences for fully online training (see the header)."""

    def __init__(self, rng: np.random.Generator, batch_size: int, max_len: int):
        self.rng, self.B, self.L = rng, batch_size, max_len
        self.lengths = np.zeros(batch_size, dtype=np.int64)
        self.bits = np.zeros((batch_size, max_len), dtype=np.int64)
        self.pos = np.zeros(batch_size, dtype=np.int64)
        self._new(np.arange(batch_size))

    def _new(self, idx):
        self.lengths[idx] = self.rng.integers(1, self.L + 1, size=len(idx))
        self.bits[idx] = self.rng.integers(0, 2, size=(len(idx), self.L))
        self.pos[idx] = 0

    def step(self):
        """Returns (input tokens (B,), targets (B,) with IGNORE, reset (B,) bool: a sequence starts here, number of
        sequences completed by this step), then advances every stream by one step."""
        rows = np.arange(self.B)
        pos, lengths = self.pos, self.lengths
        reset = pos == 0
        inputs = np.where(pos < lengths, self.bits[rows, np.minimum(pos, self.L - 1)], BLANK)
        recall = pos >= lengths
        targets = np.where(recall, self.bits[rows, np.clip(pos - lengths, 0, self.L - 1)], IGNORE)
        self.pos = pos + 1
        done = np.flatnonzero(self.pos == 2 * lengths)
        self._new(done)
        return inputs, targets, reset, len(done)


# ---------------------------------------------------------------------------------------------------------------
# Model: one-hot input -> eLSTM (RTRL or BPTT) -> output gate -> linear read-out (2 classes)
# The eLSTM step with its RTRL backward (ELSTMStepRTRL) and without traces (elstm_state_step) is in
# triton_kernels/elstm.py, shared with r2ac_elstm.py.
# ---------------------------------------------------------------------------------------------------------------
class CopyModel(nn.Module):
    def __init__(self, hidden_dim: int, in_dim: int = 3, num_classes: int = 2):
        super().__init__()
        self.hidden_dim, self.in_dim = hidden_dim, in_dim
        self.F, self.Z, self.w_f, self.w_z, self.b_f, self.b_z = (nn.Parameter(p) for p in elstm_init_params(hidden_dim, in_dim))
        self.output_gate = nn.Linear(in_dim + hidden_dim, hidden_dim)  # o_t = sigmoid(W_o [x_t, c_t] + b_o)
        self.out = nn.Linear(hidden_dim, num_classes)

    def elstm_params(self):
        return ELSTMParams(self.F, self.Z, self.w_f, self.w_z, self.b_f, self.b_z)

    def recurrent_parameter_count(self):
        return sum(p.numel() for p in self.elstm_params())

    def step(self, x, c, traces, grad_method, reset=None):
        """One token: returns (logits, c_t, new traces or None). rtrl: c_{t-1} is a constant, traces required;
        reset (B,) zeroes the state and traces of the streams whose sequence starts at this step."""
        if reset is None:
            reset = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if grad_method == "rtrl":  # the RTRL backward (triton_kernels/elstm.py) gives the eLSTM gradients
            c, _, *new = ELSTMStepRTRL.apply(x, *self.elstm_params(), c.detach(), *traces, reset)
            traces = ELSTMTraces(*new)
        else:
            c = elstm_state_step(self.elstm_params(), x, c, reset)
        h = torch.sigmoid(self.output_gate(torch.cat([x, c], dim=-1))) * c
        return self.out(h), c, traces


@torch.no_grad()
def evaluate(model: CopyModel, inputs, targets):
    """Returns (loss, token accuracy, sequence accuracy) on a batch of sequences; the state starts at zero."""
    x_all = Fn.one_hot(inputs, model.in_dim).to(model.F.dtype)
    c = torch.zeros(inputs.shape[1], model.hidden_dim, dtype=model.F.dtype, device=inputs.device)
    logits = []
    for x in x_all:
        out, c, _ = model.step(x, c, None, "bptt")
        logits.append(out)
    logits = torch.stack(logits)
    valid = targets != IGNORE
    loss = Fn.cross_entropy(logits[valid], targets[valid]).item()
    correct = logits.argmax(-1) == targets
    token_acc = correct[valid].float().mean().item()
    seq_acc = (correct | ~valid).all(0).float().mean().item()
    return loss, token_acc, seq_acc


def check_args(args):
    """Exit with one line on a size or rate no run can use, before anything is created."""
    for name in ("max_len", "val_size", "hidden_dim", "batch_size", "learning_rate", "max_updates", "eval_every"):
        if not getattr(args, name) > 0:
            sys.exit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("max_grad_norm", "max_seconds", "checkpoint_interval"):
        if not getattr(args, name) >= 0:
            sys.exit(f"error: --{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")


def resume_args(args):
    """--resume RUN_DIR: the run's saved Args and checkpoint. A flag given now must equal the saved value, except a
    larger --max-updates, which extends the run."""
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
        if f.name in ("resume", "max_updates"):
            continue
        if given != getattr(default, f.name) and given != getattr(saved, f.name):
            sys.exit(f"error: --{f.name.replace('_', '-')} {given} differs from the resumed run's {getattr(saved, f.name)}")
    if args.max_updates != default.max_updates and args.max_updates != saved.max_updates:
        if args.max_updates < checkpoint["updates"]:
            sys.exit(f"error: --max-updates {args.max_updates} is below the run's {checkpoint['updates']} updates")
        saved.max_updates = args.max_updates
    saved.resume = args.resume
    return saved, checkpoint


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a kill at any moment leaves the previous checkpoint intact."""
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def write_done_marker(run_dir, args, global_step, iterations, wall_time, **extra):
    """The completion marker that sweeps and plots read: the full configuration, the steps done and the commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    marker = dict(script=os.path.basename(__file__), args=vars(args), command=sys.argv, global_step=global_step,
                  iterations=iterations, wall_time_s=round(wall_time, 1), commit=commit,
                  finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra)
    with open(os.path.join(run_dir, "done.json"), "w") as f:
        json.dump(marker, f, indent=1)


def finished(checkpoint, args):
    """Whether the checkpointed run had reached one of its stopping criteria."""
    return (checkpoint["solved"] or checkpoint["updates"] >= args.max_updates
            or 0 < args.max_seconds < checkpoint["wall_time"])


if __name__ == "__main__":
    args = tyro.cli(Args)
    checkpoint = None
    if args.resume:
        args, checkpoint = resume_args(args)
    check_args(args)
    run_name = f"copy{args.max_len}__{args.exp_name}__{args.grad_method}__{args.seed}__{int(time.time())}"
    run_dir = f"runs/{run_name}"
    if checkpoint is not None:
        run_dir, run_name = args.resume, os.path.basename(os.path.normpath(args.resume))
        if finished(checkpoint, args):
            print(f"{run_dir} already finished after {checkpoint['updates']} updates")
            sys.exit(0)
        if os.path.exists(os.path.join(run_dir, "done.json")):
            os.remove(os.path.join(run_dir, "done.json"))  # extended: no longer complete
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
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

    model = CopyModel(args.hidden_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.995), eps=1e-9)
    num_recurrent = model.recurrent_parameter_count()
    print(f"recurrent parameters: {num_recurrent}, all parameters: {sum(p.numel() for p in model.parameters())}")
    if checkpoint is None:
        writer.add_text("model/recurrent_parameters", str(num_recurrent))

    train_rng = np.random.default_rng(args.seed)
    val_inputs, val_targets, _ = make_batch(np.random.default_rng(args.val_seed), args.val_size, args.max_len)
    val_inputs, val_targets = val_inputs.to(device), val_targets.to(device)
    if checkpoint is None:
        csv_file = open(f"{run_dir}/curve.csv", "w", newline="")
        csv.writer(csv_file).writerow(["sequences", "updates", "tokens", "wall_time", "train_loss", "val_loss",
                                       "val_token_acc", "val_seq_acc"])
    else:  # the rows written after the checkpoint are dropped, as TensorBoard's
        os.truncate(f"{run_dir}/curve.csv", checkpoint["curve_bytes"])
        csv_file = open(f"{run_dir}/curve.csv", "a", newline="")
    curve = csv.writer(csv_file)

    def clip_and_step():
        if args.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    eye = torch.eye(3, dtype=model.F.dtype, device=device)  # one-hot inputs
    if args.grad_method == "rtrl":
        streams = SequenceStreams(train_rng, args.batch_size, args.max_len)
        c, traces = elstm_zero_carry(args.batch_size, args.hidden_dim, 3, dtype=model.F.dtype, device=device)
    sequences = updates = tokens = 0
    next_eval = 0
    iteration = 0  # evaluations after the first one: periods of --eval-every training sequences
    best_seq_acc = 0.0
    solved = False
    train_loss_sum, train_loss_count = torch.zeros((), device=device), 0
    wall_time_before = 0.0
    if checkpoint is not None:  # continue exactly where the checkpoint was taken
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if args.grad_method == "rtrl":
            streams = pickle.loads(checkpoint["data"])
            c, *traces = checkpoint["carry"]
            traces = ELSTMTraces(*traces)
        else:
            train_rng = pickle.loads(checkpoint["data"])
        random.setstate(checkpoint["rng"][0])
        np.random.set_state(checkpoint["rng"][1])
        torch.set_rng_state(checkpoint["rng"][2])
        sequences, updates, tokens = checkpoint["global_step"], checkpoint["updates"], checkpoint["tokens"]
        next_eval, iteration, best_seq_acc = checkpoint["next_eval"], checkpoint["iteration"], checkpoint["best_seq_acc"]
        train_loss_sum, train_loss_count = checkpoint["train_loss"]
        wall_time_before = checkpoint["wall_time"]
        print(f"resumed {run_dir} after {updates} updates")
    start_time, start_tokens = time.time(), tokens

    def save_state():
        csv_file.flush()
        writer.flush()  # everything logged up to here is on disk before the checkpoint says so
        save_checkpoint(f"{run_dir}/checkpoint.pt", dict(
            script=os.path.basename(__file__), args=vars(args), model=model.state_dict(),
            optimizer=optimizer.state_dict(), data=pickle.dumps(streams if args.grad_method == "rtrl" else train_rng),
            carry=(c.detach(), *traces) if args.grad_method == "rtrl" else None, curve_bytes=csv_file.tell(),
            rng=(random.getstate(), np.random.get_state(), torch.get_rng_state()), global_step=sequences,
            updates=updates, tokens=tokens, next_eval=next_eval, iteration=iteration, best_seq_acc=best_seq_acc,
            train_loss=(train_loss_sum, train_loss_count), solved=solved,
            wall_time=wall_time_before + time.time() - start_time))

    while True:
        if sequences >= next_eval:  # evaluation (also at the start: the untrained model)
            val_loss, val_token_acc, val_seq_acc = evaluate(model, val_inputs, val_targets)
            train_loss = train_loss_sum.item() / max(train_loss_count, 1)
            if not math.isfinite(train_loss):
                sys.exit(f"error: non-finite training loss after {updates} updates; stopping")
            train_loss_sum, train_loss_count = torch.zeros((), device=device), 0
            wall = wall_time_before + time.time() - start_time
            best_seq_acc = max(best_seq_acc, val_seq_acc)
            print(f"sequences={sequences} updates={updates} tokens={tokens} time={wall:.1f}s train_loss={train_loss:.4f} "
                  f"val_loss={val_loss:.4f} val_token_acc={100 * val_token_acc:.2f}% val_seq_acc={100 * val_seq_acc:.2f}%",
                  flush=True)
            curve.writerow([sequences, updates, tokens, f"{wall:.2f}", f"{train_loss:.6f}", f"{val_loss:.6f}",
                            f"{val_token_acc:.6f}", f"{val_seq_acc:.6f}"])
            csv_file.flush()
            writer.add_scalar("copy/val_seq_acc", val_seq_acc, sequences)
            writer.add_scalar("copy/val_token_acc", val_token_acc, sequences)
            writer.add_scalar("losses/val_loss", val_loss, sequences)
            if sequences > 0:
                writer.add_scalar("losses/train_loss", train_loss, sequences)
                writer.add_scalar("charts/updates", updates, sequences)
                sps = int((tokens - start_tokens) / (time.time() - start_time))
                writer.add_scalar("charts/SPS", sps, sequences)  # tokens (steps) per second
                iteration += 1
            next_eval += args.eval_every
            if val_seq_acc >= 1.0:
                solved = True
                break
            if iteration and args.checkpoint_interval and iteration % args.checkpoint_interval == 0:
                save_state()
        wall = wall_time_before + time.time() - start_time
        if updates >= args.max_updates or (args.max_seconds > 0 and wall > args.max_seconds):
            break

        if args.grad_method == "rtrl":  # fully online: one step of the streams, one update
            inputs, targets, reset, completed = streams.step()
            x = eye[torch.as_tensor(inputs, device=device)]
            logits, c, traces = model.step(x, c, traces, "rtrl", torch.as_tensor(reset, device=device))
            tokens += args.batch_size
            sequences += completed
            if (targets != IGNORE).any():
                loss = Fn.cross_entropy(logits, torch.as_tensor(targets, device=device), ignore_index=IGNORE)
                loss.backward()
                clip_and_step()
                updates += 1
                train_loss_sum += loss.detach()
                train_loss_count += 1
        else:
            inputs, targets, _ = make_batch(train_rng, args.batch_size, args.max_len)
            inputs, targets = inputs.to(device), targets.to(device)
            c = torch.zeros(args.batch_size, args.hidden_dim, dtype=model.F.dtype, device=device)
            logits = []
            for t in range(inputs.shape[0]):
                out, c, _ = model.step(eye[inputs[t]], c, None, "bptt")
                logits.append(out)
            loss = Fn.cross_entropy(torch.stack(logits).flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
            loss.backward()
            clip_and_step()
            updates += 1
            train_loss_sum += loss.detach()
            train_loss_count += 1
            sequences += args.batch_size
            tokens += inputs.numel()

    save_state()
    wall = wall_time_before + time.time() - start_time
    status = "solved (100% validation sequence accuracy)" if solved else "NOT solved (stopped at the update/time limit)"
    print(f"final: {status} L={args.max_len} grad_method={args.grad_method} seed={args.seed} sequences={sequences} "
          f"updates={updates} tokens={tokens} wall_time={wall:.1f}s best_val_seq_acc={100 * best_seq_acc:.2f}%")
    write_done_marker(run_dir, args, sequences, iteration, wall, updates=updates, tokens=tokens, solved=solved)
    csv_file.close()
    writer.close()
