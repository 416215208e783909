"""Training on several processes (`torchrun --nproc_per_node N`, `accelerate launch --multi_gpu --num_processes N`):
what a launch gives each process, and what the main process makes once for all of them.

One run is one job: the main process (rank 0) learns the vocabulary (the others load it, see
`training._shared_tokenizer`), starts the embedding, counts the wide branch's document frequencies and fits it, and
gives the others those weights (`share_from_main_process`); the `Trainer`'s `DistributedSampler` splits the
training papers between the processes; only the main process writes the model folder and puts it in place.
"""

import os

import torch

from .errors import UserError

# What MPI launchers (mpirun of Open MPI, MPICH, MVAPICH) set for the number of processes, as accelerate reads them.
MPI_WORLD_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Set by `accelerate launch` in the processes it starts, whichever launcher it uses.
ACCELERATE_LAUNCHED = "ACCELERATE_MIXED_PRECISION"
# The collective backends that run on CPU tensors.
CPU_BACKENDS = ("gloo", "mpi", "ccl")


def launched_processes() -> int:
    """How many processes the launcher started for this run (1 without a launcher)."""
    for name in ("WORLD_SIZE", *MPI_WORLD_SIZE):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def accelerator_available() -> bool:
    """Whether accelerate gives each process a device to train on and a backend to join them (CUDA, XPU, ...)."""
    try:
        from accelerate.utils import get_distributed_backend, get_torch_accelerator_backend
    except ImportError:  # accelerate before its multi-device helpers: CUDA is the device it distributes over
        return torch.cuda.is_available()
    device_type, _ = get_torch_accelerator_backend()
    return get_distributed_backend(device_type) is not None


def check_launch(training_args) -> None:
    """Makes a multi-process launch on a machine without GPUs one distributed job on CPU, with the gloo backend
    unless `--ddp_backend` names another CPU backend; refuses a launch that started one process where it was asked
    for several, and a GPU-only backend without GPUs.

    Without this, accelerate joins the processes only where `--use_cpu` says so: each `torchrun` process would
    train alone, on every paper, with a vocabulary of its own, into the same output folder. And `accelerate launch
    --num_processes N` without `--multi_gpu` (`--cpu` included) starts one process where there is no GPU to give
    each (several only through MPI, with `--mpirun_hostfile`): it sets the rendezvous address for N processes,
    but neither a world size nor a rank."""
    if os.environ.get(ACCELERATE_LAUNCHED) and os.environ.get("MASTER_ADDR") and launched_processes() == 1:
        raise UserError(
            "accelerate launch was asked for several processes but started only this one (without --multi_gpu it "
            "starts several only through MPI, --mpirun_hostfile): use accelerate launch --multi_gpu --num_processes "
            "N, or torchrun --nproc_per_node N, which run on CPU too (gloo)"
        )
    if launched_processes() == 1 or accelerator_available():
        return
    if training_args.ddp_backend not in (None, *CPU_BACKENDS):
        raise UserError(
            f"--ddp_backend {training_args.ddp_backend} needs GPUs, and this machine has none: leave it out "
            f"(gloo), or give one of {', '.join(CPU_BACKENDS)}"
        )
    training_args.use_cpu = True
    training_args.ddp_backend = training_args.ddp_backend or "gloo"


def share_from_main_process(training_args, tensors) -> None:
    """Gives every process the main process's values of `tensors` (in place; each process passes its tensors of
    the same shapes, in the same order): what the main process alone computed, such as a new model's starting
    weights. Nothing to do in a single process."""
    if training_args.world_size <= 1:
        return
    for tensor in tensors:
        # The backend's device: NCCL broadcasts CUDA tensors only, and the model is still on the CPU here.
        on_device = tensor.detach().to(training_args.device).contiguous()
        torch.distributed.broadcast(on_device, src=0)
        tensor.detach().copy_(on_device)
