"""Where training batches come from: a registered dataset held in memory, or the user's own
DataLoaders. The loop asks a feed for an epoch's batches and for evaluation batches; it does
not care which kind it has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from scpl.data import DataBundle, Split
from scpl.data.augment import Augment
from scpl.errors import ConfigError
from scpl.parallel.runner import act_to


def batch_to(split: Split, idx: torch.Tensor, device: torch.device):
    """Gather a batch by index and move it to the device (pinned + non-blocking on CUDA).

    Text batches become ((tokens, lengths), y), trimmed to the batch's longest document so
    no stage computes on columns that are padding for every row."""
    x, y = split.x[idx], split.y[idx]
    if split.lengths is not None:
        lengths = split.lengths[idx]
        x = x[:, : int(lengths.max())]
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        # Lengths stay on the host; each stage copies them to its device without blocking.
        return (x.to(device, non_blocking=True), lengths), y.to(device, non_blocking=True)
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def to_device(x, device: torch.device):
    """Move a batch's inputs (a tensor or a tuple of tensors) to ``device``."""
    return act_to(tuple(x) if isinstance(x, list) else x, device)  # host-side lengths stay


def shard_batch(x, y: torch.Tensor, index: int, count: int):
    """Replica ``index`` of ``count``'s rows of a global batch: rows index::count (data
    parallelism). Strided rather than contiguous, so with micro-batches the replicas' m-th
    micro-batches together hold exactly the global batch's m-th micro-batch."""
    n = int(y.shape[0])
    if n % count:
        raise ConfigError(
            f"a batch of {n} samples does not split into {count} equal shards (data parallel); "
            "use a batch size that is a multiple of --data-parallel (loaders: drop_last=True)"
        )
    if isinstance(x, tuple):
        x = tuple(t[index::count] if torch.is_tensor(t) and t.shape[:1] == (n,) else t for t in x)
    else:
        x = x[index::count]
    return x, y[index::count]


class DatasetFeed:
    """A registered dataset in memory: batches sampled by index from a seeded permutation (so a
    resumed run sees exactly the batches it would have seen) and augmented on the device."""

    def __init__(
        self,
        data: DataBundle,
        augment: Augment | None,
        batch_size: int,
        eval_batch_size: int,
        device: torch.device,
    ) -> None:
        self.data, self.augment, self.device = data, augment, device
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_train, self.num_val, self.num_test = (
            len(data.train),
            len(data.val),
            len(data.test),
        )
        self.full_steps = self.num_train // batch_size
        if self.full_steps == 0:
            raise ConfigError(
                f"--batch-size {batch_size} exceeds the {self.num_train} training samples; lower it"
            )

    def train_batches(
        self, g: torch.Generator, first: int, steps: int, load: bool = True
    ) -> Iterator[tuple]:
        """Batches ``first..steps-1`` of the epoch whose order ``g`` draws now; with
        ``load=False`` (dist ranks that receive from a neighbour) the order is still drawn, so
        every rank's generator stays in step, and (None, None) stands for each batch."""
        perm = torch.randperm(self.num_train, generator=g)
        for i in range(first, steps):
            if not load:
                yield None, None
                continue
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = batch_to(self.data.train, idx, self.device)
            yield self.augment(x, y) if self.augment is not None else (x, y)

    def eval_batches(self, which: str) -> Iterator[tuple]:
        split: Split = getattr(self.data, which)
        for start in range(0, len(split), self.eval_batch_size):
            idx = torch.arange(start, min(start + self.eval_batch_size, len(split)))
            x, y = batch_to(split, idx, self.device)
            yield (self.augment.normalise(x) if self.augment is not None else x), y


class LoaderFeed:
    """The user's own DataLoaders (or any iterables of (x, y) batches): batches are used as
    they come (augmentation is the loader's job). A resumed run skips the batches of the
    interrupted epoch that were already trained, which repeats the original order only if the
    loader's order is seeded."""

    def __init__(
        self,
        train: Iterable,
        val: Iterable | None,
        test: Iterable | None,
        device: torch.device,
    ) -> None:
        self.train, self.val, self.test, self.device = train, val, test, device
        try:
            self.full_steps = len(train)  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError(
                "train_loader must have a length (a DataLoader, or a list of batches) so "
                "epochs and the learning-rate schedule can be planned"
            ) from None
        if self.full_steps == 0:
            raise ConfigError("train_loader yields no batches; check its dataset and batch size")
        self.num_train = _num_samples(train)
        self.num_val = _num_samples(val) if val is not None else 0
        self.num_test = _num_samples(test) if test is not None else 0

    def first_batch(self) -> tuple:
        """One training batch, for shape inference (the loader is iterated once more)."""
        return next(iter(self.train))

    def train_batches(
        self, g: torch.Generator, first: int, steps: int, load: bool = True
    ) -> Iterator[tuple]:
        for i, (x, y) in enumerate(self.train):
            if i >= steps:
                break
            if i >= first:
                yield to_device(x, self.device), y.to(self.device, non_blocking=True)

    def eval_batches(self, which: str) -> Iterator[tuple]:
        for x, y in getattr(self, which) or ():
            yield to_device(x, self.device), y.to(self.device, non_blocking=True)


def _num_samples(loader: Iterable) -> int:
    """Samples behind a loader (its dataset's length when it has one, else counted)."""
    ds = getattr(loader, "dataset", None)
    if ds is not None and hasattr(ds, "__len__"):
        return len(ds)
    return sum(int(y.shape[0]) for _, y in loader)


def infer_num_classes(loader: Iterable) -> int:
    """Number of classes as 1 + the largest label (one pass over the labels; a dataset with
    ``targets`` or ``tensors`` is read directly)."""
    ds = getattr(loader, "dataset", None)
    targets = getattr(ds, "targets", None)
    if targets is None and hasattr(ds, "tensors"):
        targets = ds.tensors[-1]
    if targets is not None:
        return int(torch.as_tensor(targets).max()) + 1
    return max(int(y.max()) for _, y in loader) + 1
