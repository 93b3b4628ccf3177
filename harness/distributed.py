"""One training cell as several processes: the boundary to torch.distributed.

`train.fit` hands a cell whose `train.distributed` asks for more than one process to `fit` here. The
cell's own process has loaded the starting model (on the CPU when the ranks will use GPUs, so that no
CUDA context exists before the fork) and stays the one process that evaluates: it forks one rank per
process (torch.multiprocessing, `fork`, so every rank inherits the model, tokenizer and trainer
factory without pickling), each rank builds the same TRL trainer, and the Trainer's accelerate
integration runs DDP, FSDP (full shard) or DeepSpeed ZeRO from the arguments `training_args` adds
(`arguments`). Rank 0 saves the trained weights (FSDP gathers a full state dict; a peft model saves its
adapter) and the training figures; the cell's process loads them back into its model and goes on as
after a one-process training. The cell is still one cell: one row, one artifact, one evaluation.

A cell across machines (`nodes` > 1) runs the same way on every node: a cluster executor (Slurm, Ray)
starts the cell's process once per node with the node's place in the environment (`Node`); each
forks its `processes` ranks (global rank = node × processes + local rank). Node 0 picks the address
and port of the rendezvous and writes them to a file in the run folder, which the other nodes read;
once trained, node 0 evaluates and writes the row while the others stop (`NodeDone`): still one cell.

A rank that dies (an exception, an OOM kill, SIGKILL) ends the others and the cell fails naming it.
A rank that stops (a collective that never returns) is found by the heartbeats the ranks write at
every training event: when none has moved for `timeout_seconds`, each rank's Python stack is taken
(faulthandler, SIGUSR1), every rank is killed, and the cell fails naming the ranks that stopped
outside a collective (the others were waiting for them) and where.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATS_FILE = "rank0.json"
FAULT_ENV = "HARNESS_FAULT_KILL_RANK"  # fault injection for tests: the rank of this number SIGKILLs itself at step 2
HANG_ENV = "HARNESS_FAULT_HANG_RANK"  # fault injection for tests: the rank of this number hangs at step 2
PIDS_ENV = "HARNESS_FAULT_RANK_PIDS"  # for tests: a file every rank appends its pid to
WEIGHTS = "weights"  # rank 0's save_model folder
FULL_STATE = "full_state.pt"  # an FSDP cell's gathered state dict, in WEIGHTS


class RankFailed(RuntimeError):
    """A rank of a distributed cell died, failed or hung; the message names it."""


class NodeDone(BaseException):  # noqa: N818 — not an error: a BaseException so no kind's `except Exception` takes it
    """Raised on a node other than node 0 once its ranks have trained: node 0 alone evaluates the cell."""


NODE_ENV = ("HARNESS_NODE_RANK", "HARNESS_NODES", "HARNESS_NODE_ADDRESS", "HARNESS_RENDEZVOUS")
CLOSED = {"closed": True}  # what node 0 leaves in the rendezvous file once its cell has ended


@dataclass(frozen=True)
class Node:
    """This process's place in a cell across machines, set in the environment by the executor that
    started one cell process per node (Slurm: from submitit's task; Ray: per task of a placement group)."""

    rank: int
    count: int
    address: str  # this machine's address as the other nodes reach it
    rendezvous: Path  # a file in the run folder, one per job attempt: node 0 writes its address and port there

    @classmethod
    def current(cls) -> Node | None:
        values = [os.environ.get(key) for key in NODE_ENV]
        if not all(values):
            return None
        rank, count, address, rendezvous = values
        return cls(int(rank), int(count), address, Path(rendezvous))  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return dict(zip(NODE_ENV, (str(self.rank), str(self.count), self.address, str(self.rendezvous))))

    def failure_file(self, rank: int) -> Path:
        return self.rendezvous.with_name(f"{self.rendezvous.stem}.node{rank}.error")


def close(node: Node) -> None:
    """Node 0's cell has ended: a node still waiting for the rendezvous stops waiting (the cell failed
    before training, or it was already finished)."""
    from harness.results import write_atomic

    write_atomic(node.rendezvous, json.dumps(CLOSED))


def rendezvous(spec) -> tuple[dict[str, str], int]:
    """The environment every rank of this node needs to meet the others, and this node's first global rank."""
    if spec.nodes == 1:
        return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}, 0
    node = Node.current()
    if node is None or node.count != spec.nodes:
        raise RankFailed(
            f"train.distributed.nodes: {spec.nodes}: a cell across machines is started once per node by a cluster "
            "executor (executor.kind: slurm or ray); the local executor runs one machine (docs/scale-out.md)"
        )
    if node.rank == 0:
        from harness.results import write_atomic

        master: dict = {"address": node.address, "port": free_port("")}
        write_atomic(node.rendezvous, json.dumps(master))
    else:
        master = _await_master(node, spec.timeout_seconds)
    return {"MASTER_ADDR": master["address"], "MASTER_PORT": str(master["port"])}, node.rank * spec.processes


def _await_master(node: Node, timeout: float) -> dict:
    """Node 0's address and port, once it has written them; NodeDone when its cell ended without training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _read(node.rendezvous)
        if text:
            master = json.loads(text)
            if master.get("closed"):
                print(f"[node {node.rank}] node 0 ended the cell without training: nothing to do here", flush=True)
                raise NodeDone
            return master
        time.sleep(0.5)
    raise RankFailed(f"node {node.rank}: node 0 did not start its ranks within {timeout:.0f}s (timeout_seconds)")


def remote_failures(node: Node | None, wait: float = 5.0) -> str:
    """What the other nodes said when their ranks failed (node 0's own ranks see only a lost peer)."""
    if node is None or node.count == 1:
        return ""
    deadline = time.monotonic() + wait
    while True:
        said = [_read(node.failure_file(n)).strip() for n in range(1, node.count)]
        if any(said) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    return "; ".join(f"node {n}: {text}" for n, text in enumerate(said, start=1) if text)


def arguments(spec, device: str) -> dict:
    """The TrainingArguments a strategy needs (empty for one process)."""
    if spec is None or spec.world_size == 1:
        return {}
    args: dict = {"ddp_backend": "nccl" if device.startswith("cuda") else "gloo", "ddp_timeout": spec.timeout_seconds}
    if spec.strategy == "fsdp":
        args["fsdp"] = "full_shard auto_wrap" + (" offload" if spec.offload == "cpu" else "")
        args["fsdp_config"] = {
            "fsdp_version": 2,
            "reshard_after_forward": True,
            "state_dict_type": "FULL_STATE_DICT",  # save_model gathers whole weights on rank 0
            "cpu_ram_efficient_loading": False,  # every rank holds the forked model already
        }
    elif spec.strategy == "deepspeed":
        args["deepspeed"] = deepspeed_config(spec)
    return args


def deepspeed_config(spec) -> dict:
    """A ZeRO config the Trainer fills in ("auto" values come from the TrainingArguments)."""
    stage = spec.zero_stage or 2
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if spec.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }


def fit(build, settings, device: str, callbacks: list) -> tuple[Path, dict]:
    """Train in `settings.distributed`'s ranks; return (rank 0's folder with the trained weights, its
    figures with every rank's peak memory and state bytes). Raises RankFailed; on a node other than
    node 0, NodeDone once trained."""
    import torch.multiprocessing as mp

    spec = settings.distributed
    master, first = rendezvous(spec)
    node = Node.current() if spec.nodes > 1 else None
    folder = Path(tempfile.mkdtemp(prefix="harness-ranks-"))
    env = master | {"WORLD_SIZE": str(spec.world_size)}
    sys.stdout.flush()
    sys.stderr.flush()
    context = mp.start_processes(
        _rank_main,
        args=(build, callbacks, device, spec.processes, first, env, str(folder)),
        nprocs=spec.processes,
        join=False,
        start_method="fork",
    )
    try:
        _wait(context, folder, spec.timeout_seconds, first)
    except RankFailed as exc:
        shutil.rmtree(folder, ignore_errors=True)  # its logs are quoted in the error already
        if node is not None and node.rank > 0:
            from harness.results import write_atomic

            write_atomic(node.failure_file(node.rank), str(exc))
            raise
        remote = remote_failures(node)  # what killed the cell, where node 0's ranks saw only a lost peer
        raise RankFailed(f"{remote}; on node 0, {exc}" if remote else str(exc)) from None
    if first > 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise NodeDone
    return folder, json.loads((folder / STATS_FILE).read_text())


def _wait(context, folder: Path, timeout: float, first: int) -> None:
    """Join this node's ranks; a failure names the (global) rank, how it ended and the last lines of its log."""
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    try:
        while not context.join(timeout=1.0):  # join raises as soon as one rank fails, ending the others
            if _stalled(folder, len(context.processes), timeout):
                culprits, where = _diagnose(context, folder, first)
                _kill(context)
                raise RankFailed(
                    f"no rank made progress for {timeout:.0f}s (train.distributed.timeout_seconds): {culprits}; "
                    f"every rank was killed{where}"
                )
    except ProcessExitedException as exc:
        _kill(context)
        how = f"was killed by {exc.signal_name}" if exc.signal_name else f"exited with code {exc.exit_code}"
        rank = first + exc.error_index
        raise RankFailed(f"rank {rank} {how}{_log_tail(folder, exc.error_index)}") from None
    except ProcessRaisedException as exc:
        _kill(context)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "an exception"
        rank = first + exc.error_index
        raise RankFailed(f"rank {rank} failed: {last}{_log_tail(folder, exc.error_index)}") from None


def _stalled(folder: Path, ranks: int, timeout: float) -> bool:
    """Every rank has started training, and none has written a heartbeat for `timeout` seconds."""
    beats = [folder / f"rank{r}.beat" for r in range(ranks)]
    if not all(path.exists() for path in beats):
        return False  # still starting (building its trainer)
    return time.time() - max(path.stat().st_mtime for path in beats) >= timeout


# Frames of a rank that waits on the others: a torch.distributed collective, or DDP's all-reduce inside
# the backward pass (it runs in autograd's engine, below this frame).
WAITING = ("torch/distributed/", "_engine_run_backward")


def _diagnose(context, folder: Path, first: int) -> tuple[str, str]:
    """Which ranks stopped on their own, from each rank's Python stack (faulthandler, on SIGUSR1): the
    ranks not inside a collective are the culprits; the others wait for them."""
    for process in context.processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGUSR1)
    time.sleep(1.0)
    stacks = {r: _read(folder / f"rank{r}.stack") for r in range(len(context.processes))}
    culprits = [r for r, stack in stacks.items() if stack and not any(w in stack for w in WAITING)]
    if not culprits:
        return "every rank waits in a collective", ""
    frames = [line.strip() for line in stacks[culprits[0]].splitlines() if line.strip().startswith("File")]
    where = f"; rank {first + culprits[0]} was at: " + " <- ".join(frames[:4]) if frames else ""
    names = ", ".join(str(first + r) for r in culprits)
    return (
        f"rank{'s' if len(culprits) > 1 else ''} {names} stopped outside any collective, the others wait for it",
        where,
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _kill(context) -> None:
    """No rank outlives the cell: SIGKILL whatever is left (join already ended the others)."""
    for process in context.processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=10)


def _log_tail(folder: Path, rank: int, lines: int = 8) -> str:
    path = folder / f"rank{rank}.log"
    if not path.is_file():
        return ""
    tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    return "; its last log lines: " + " | ".join(tail) if tail else ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on `host` ("": every interface, for ranks on other machines)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def examples_trained(trainer) -> int:
    """The train examples behind a trainer's dataset (harness.train's SFT sets `train_examples`: a multi-turn
    example is one record per assistant turn); else one record each (DPO's pairs, GRPO's prompts)."""
    return getattr(trainer, "train_examples", len(trainer.train_dataset))


def _rank_main(local: int, build, callbacks, device: str, processes: int, first: int, env: dict, folder: str) -> None:
    """One rank: its environment, its share of the CPU, the trainer, training; rank 0 saves. `local` is
    its index on this node (its files here are named by it), `first + local` its global rank."""
    import torch

    from harness.measure import measure

    out, rank = Path(folder), first + local
    _own_log(out / f"rank{local}.log", keep_stdout=rank == 0)
    stack = open(out / f"rank{local}.stack", "w")  # noqa: SIM115 — open for the rank's life: SIGUSR1 writes here
    faulthandler.register(signal.SIGUSR1, file=stack, all_threads=False)
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(local), LOCAL_WORLD_SIZE=str(processes))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    else:  # the cell's cores, split between its ranks
        torch.set_num_threads(max(1, torch.get_num_threads() // processes))
    _fresh_accelerate_state()
    work = out / f"work{local}"
    # a callback marked rank_zero_only (the progress bar) runs on rank 0 alone: one bar, not one per rank
    trainer = build(work, [c for c in callbacks if rank == 0 or not getattr(c, "rank_zero_only", False)])
    beat = _heartbeat(out / f"rank{local}.beat")
    trainer.add_callback(beat)
    if os.environ.get(FAULT_ENV) == str(rank):  # fault injection for tests: this rank dies mid-training
        trainer.add_callback(_fault_at_step(2, hang=False))
    if os.environ.get(HANG_ENV) == str(rank):  # ... or stops answering its collectives
        trainer.add_callback(_fault_at_step(2, hang=True))
    if os.environ.get(PIDS_ENV):  # for tests: where the ranks were, to look for orphans afterwards
        with open(os.environ[PIDS_ENV], "a") as pids:
            pids.write(f"{os.getpid()}\n")
    if trainer.args.fsdp_plugin_args is not None and not device.startswith("cuda"):
        _fsdp_on_cpu(trainer)
    rank_device = f"cuda:{local}" if device.startswith("cuda") else device
    with measure(rank_device) as phase:
        trainer.train()
    validation_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    beat.touch()
    _save(trainer, out, rank)
    beat.touch()
    ranks: list = [None] * torch.distributed.get_world_size()  # every rank's figures, on every node, to rank 0
    torch.distributed.all_gather_object(ranks, {"peak": phase.peak_bytes, "state": state_bytes(trainer)})
    if rank == 0:
        state = trainer.state
        stats = {
            "seconds": phase.seconds,
            "method": phase.method,
            "tokens": int(state.num_input_tokens_seen),  # gathered over the ranks by the Trainer
            "steps": state.global_step,
            "history": [h for h in state.log_history if "loss" in h],
            "validation_loss": validation_loss,
            "examples": examples_trained(trainer),
            "truncated_examples": getattr(trainer, "truncated_examples", 0),
            "adapter": (out / WEIGHTS / "adapter_config.json").is_file(),
            "peaks": [r["peak"] for r in ranks],
            "state_bytes": [r["state"] for r in ranks],
        }
        (out / STATS_FILE).write_text(json.dumps(stats))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    # Done: exit without tearing down the trainer. Freeing DDP's reducer joins gloo's work thread while
    # holding the GIL, and that thread may still be freeing the all-gather above, which needs the GIL: a
    # deadlock seen under load (torch 2.9). Nothing of this rank is needed after its files.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _fsdp_on_cpu(trainer) -> None:
    """accelerate enables FSDP only on accelerators (its CPU ranks get DDP); torch's FSDP2 shards over
    gloo as well, so a CPU rank switches the trainer's accelerator state to FSDP before it prepares
    the model (the path the tests take on a CPU; on CUDA the Trainer sets it up itself)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def _save(trainer, out: Path, rank: int) -> None:
    """Rank 0 writes the trained weights. Under FSDP every rank takes part in gathering the full state
    dict (to rank 0, in host memory); otherwise the Trainer saves (an adapter as an adapter)."""
    if not trainer.is_fsdp_enabled:
        trainer.save_model(str(out / WEIGHTS))
        return
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    folder = out / WEIGHTS
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(trainer.model, "peft_config"):  # adapters: saved as peft saves them, from the gathered weights
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        trainer.model.peft_config["default"].save_pretrained(folder)
        adapter = get_peft_model_state_dict(trainer.model, state_dict=full)
        save_file({k: v.contiguous() for k, v in adapter.items()}, folder / "adapter_model.safetensors")
    else:
        torch.save(full, folder / FULL_STATE)


def state_bytes(trainer) -> int:
    """Bytes of the parameters and optimizer states this rank holds: all of them under DDP, its shard
    under FSDP (a DTensor's local part)."""
    import torch

    def local(tensor) -> int:
        part = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        return part.numel() * part.element_size()

    params = sum(local(p) for p in trainer.model.parameters())
    states = trainer.optimizer.state.values() if trainer.optimizer is not None else []
    moments = sum(local(v) for state in states for v in state.values() if isinstance(v, torch.Tensor) and v.dim())
    return params + moments


def _heartbeat(path: Path):
    """A callback that writes, at every training event, how many it has seen to `path` (the cell's process
    watches for stuck ranks)."""
    from transformers import TrainerCallback

    class Heartbeat(TrainerCallback):
        events = 0  # how far this rank got: a rank stuck in a collective stops counting, the others go on

        def touch(self) -> None:
            self.events += 1
            path.write_text(str(self.events))

        def on_train_begin(self, args, state, control, **kwargs):
            self.touch()

        def on_step_begin(self, args, state, control, **kwargs):
            self.touch()

        def on_step_end(self, args, state, control, **kwargs):
            self.touch()

        def on_substep_end(self, args, state, control, **kwargs):  # gradient accumulation's micro-steps
            self.touch()

        def on_evaluate(self, args, state, control, **kwargs):
            self.touch()

    return Heartbeat()


def _fault_at_step(step: int, hang: bool):
    """A callback that SIGKILLs its rank, or makes it sleep through every collective, at `step`."""
    from transformers import TrainerCallback

    class Fault(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                if hang:
                    time.sleep(3600)
                os.kill(os.getpid(), signal.SIGKILL)

    return Fault()


def _own_log(path: Path, keep_stdout: bool) -> None:
    """Rank 0 keeps the job's log (the driver shows its progress lines) and tees nothing; the other
    ranks write to a log of their own, read back when they fail."""
    if keep_stdout:
        return
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(handle, stream.fileno())


def _fresh_accelerate_state() -> None:
    """accelerate keeps process-wide singletons; a forked rank must not inherit its parent's."""
    from accelerate.state import AcceleratorState, PartialState

    PartialState._reset_state()
    AcceleratorState._reset_state(reset_partial_state=True)


def load_trained(model, folder: Path, adapter: bool):
    """The cell's model with rank 0's trained weights: its adapter (the model is wrapped the way the
    trainer wrapped it) or the full state dict."""
    from safetensors.torch import load_file

    weights = folder / WEIGHTS
    if adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, weights, is_trainable=True)  # as trained: the counts match
    state: dict = {}
    if (weights / FULL_STATE).is_file():
        import torch

        state = torch.load(weights / FULL_STATE, map_location="cpu", weights_only=True)
    for shard in sorted(weights.glob("*.safetensors")):
        state |= load_file(shard)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"}  # a tied head is saved once, as the embedding
    if set(missing) - tied or unexpected:
        raise RankFailed(f"the gathered weights do not fit the model: missing {missing[:3]}, extra {unexpected[:3]}")
    return model
