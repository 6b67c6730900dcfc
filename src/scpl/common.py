"""The one place for device and distributed set-up (driven by torchrun's environment variables,
with a single-process fallback) and for seeding."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from scpl.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun launch (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def dist_env() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun."""
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(spec: str) -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' into a device that exists, or raise."""
    spec = spec.strip()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_env().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(
            f"--device {spec!r} is not a device name; use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= n:
            raise ConfigError(
                f"device {spec} does not exist (this machine has {n} CUDA device(s)); "
                f"use --device cpu{' or cuda:0..cuda:' + str(n - 1) if n else ''}"
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        raise ConfigError("device mps is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device type {dev.type!r} is not supported; use cpu or cuda:N")
    return dev


def resolve_devices(spec: str, count: int, default: str = "auto") -> list[torch.device]:
    """A comma-separated device list (one per stage); a single entry is repeated ``count`` times.
    An empty ``spec`` uses ``default``; 'auto' puts one GPU per stage when there are enough."""
    if not spec.strip():
        if (
            default == "auto"
            and torch.cuda.is_available()
            and torch.cuda.device_count() >= count > 1
        ):
            return [torch.device("cuda", i) for i in range(count)]
        return [resolve_device(default)] * count
    parts = [p for p in spec.split(",") if p.strip()]
    devices = [resolve_device(p) for p in parts]
    if len(devices) == 1:
        devices = devices * count
    if len(devices) != count:
        raise ConfigError(
            f"--devices lists {len(devices)} devices for {count} stages; give one per stage "
            "or a single device for all"
        )
    return devices


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def init_distributed(device: torch.device, timeout_s: float = 300.0) -> DistEnv:
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA) if launched by torchrun.

    The timeout bounds every collective and point-to-point wait, so a dead peer turns into an
    error instead of a hang.
    """
    import datetime

    import torch.distributed as dist

    env = dist_env()
    if not env.is_distributed or dist.is_initialized():
        return env
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torchrun's env:// rendezvous by default; SCPL_DIST_INIT (e.g. file:///shared/rdzv) lets
    # processes started by hand or by a batch system meet without a free TCP port.
    init = os.environ.get("SCPL_DIST_INIT") or None
    kw = dict(init_method=init, rank=env.rank, world_size=env.world_size) if init else {}
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kw)
    return env


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
