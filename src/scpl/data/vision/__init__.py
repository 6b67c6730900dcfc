"""Image datasets: Fashion-MNIST (IDX), CIFAR-10/100 (python pickles), Tiny ImageNet (JPEG tree),
scikit-learn's digits, and a synthetic set for benchmarks. Importing this package registers them.

Every loader returns :class:`~scpl.data.base.RawData` with uint8 images ``[N, C, H, W]`` and
int64 labels. Corrupt, truncated or inconsistent files raise :class:`DataError` naming the file.
"""

from scpl.data.vision import cifar, fashion, generated, tiny_imagenet  # noqa: F401  (registers)
from scpl.data.vision.fashion import FASHION_FILES, read_idx

__all__ = ["FASHION_FILES", "read_idx"]
