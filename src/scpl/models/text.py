"""Text models from the SCPL NLP experiments: a bidirectional LSTM and a Transformer encoder.

Data contract (every stage, and the classifier):

* model input: ``(tokens, lengths)`` -- tokens int64 ``[B, T]`` padded with 0 (``<pad>``),
  lengths int64 ``[B]`` with ``1 <= lengths[b] <= T``, on the host or the device (masks copy
  them to the device without blocking; nothing reads them on the host).
* stage output: ``(h, lengths)`` -- h float ``[B, T, D]`` with ``h[b, t] == 0`` for every
  ``t >= lengths[b]``, and the *same* lengths tensor passed through. Every stage maps such a
  tuple to such a tuple, so lengths travel with the activations; a stage never reads a padded
  position, so appending padding changes nothing at the valid positions.
* ``features(i, out)``: masked mean over the valid positions, ``[B, D]`` (local losses);
  ``feature_dim(i)`` is D.
* ``classifier(out)``: FC-tanh-FC on the masked mean (or, for the LSTM with ``pool="last"``,
  on the final states: forward direction at ``lengths - 1``, backward direction at 0).
* ``stage_shapes[i] == (T, D_i)`` from a dry run at ``T = input_shape[0]`` (the dataset's
  padded length). T is not fixed by the model: a batch trimmed to its longest sequence has a
  smaller T, so an executor that sends activations between processes must send the batch's T
  (or its full shape) and the lengths tensor along with h; gradients only flow into h.

Stages: stage 1 is the embedding (GloVe rows when ``embeddings`` is given; the Transformer adds a
sinusoidal positional encoding unless ``positional=False`` -- the public SCPL code defines one
but never applies it); stages 2..K hold one bidirectional LSTM layer / one
``nn.TransformerEncoderLayer`` each (``num_layers`` more layers may be spread over them with
``partition``). So K >= 2 unless ``num_layers`` is given, in which case K=1 puts everything in
one stage.

Sizes at ``width=1``: embeddings 300-d; LSTM hidden 300 *in total* (150 per direction), so
every stage emits 300 features like the embedding; Transformer ``d_model = embed_dim`` (300),
6 heads, feed-forward 4 * d_model, dropout 0.1, post-norm (PyTorch's default layer). ``width``
scales the LSTM hidden size, d_model (rounded to a multiple of the heads; a linear projection
follows the embedding when d_model differs from the embedding size), the feed-forward size and
the classifier's hidden layer (300); the embedding size follows the GloVe file, not ``width``.

Determinism: the LSTM stages have no dropout (one layer per ``nn.LSTM``). The Transformer's
dropout (``dropout=0.1``) draws from the device's global RNG in training mode, so a pipelined
run whose stages run concurrently draws in a different order than the sequential reference:
correct, but not bitwise equal to it. Parity checks must pass ``dropout=0.0``; ``eval()``
turns dropout off as usual. (In eval mode PyTorch may take the fused encoder fast path, whose
rounding differs slightly from the training-mode kernels.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.models.base import StagedModel, check_num_stages, even_partition, register_model

PAD_ID, UNK_ID = 0, 1  # as in scpl.data.text
DEFAULT_VOCAB_SIZE = 30000
EMBED_DIM = 300
LSTM_HIDDEN = 300  # both directions together
CLASSIFIER_HIDDEN = 300
HEADS = 6
DROPOUT = 0.1
DRY_RUN_T = 8  # dry-run length when the input shape does not say


def valid_mask(lengths: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
    """Bool [B, T]: True at positions t < lengths[b]."""
    return torch.arange(t, device=device)[None, :] < lengths.to(device, non_blocking=True)[:, None]


def masked_mean(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` [B, T, D] over the valid positions of each row -> [B, D]."""
    valid = valid_mask(lengths, h.shape[1], h.device)
    total = torch.where(valid[..., None], h, h.new_zeros(())).sum(dim=1)
    return total / lengths.to(h.device, non_blocking=True).clamp(min=1)[:, None].to(h.dtype)


def last_states(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Final states of a bidirectional RNN output [B, T, 2H]: forward at len-1, backward at 0."""
    half = h.shape[-1] // 2
    idx = (
        (lengths.to(h.device, non_blocking=True) - 1)
        .clamp(min=0)
        .view(-1, 1, 1)
        .expand(-1, 1, half)
    )
    forward = h[..., :half].gather(1, idx).squeeze(1)
    return torch.cat([forward, h[:, 0, half:]], dim=-1)


def sinusoidal_encoding(t: int, dim: int) -> torch.Tensor:
    """The Transformer's fixed positional encoding [t, dim] (sin on even, cos on odd dims)."""
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(t, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class Embed(nn.Module):
    """Stage 1: (tokens, lengths) -> (embeddings [B, T, D], lengths); zeros at padding."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        out_dim: int,
        embeddings: torch.Tensor | None,
        freeze: bool,
        positional: bool,
        max_len: int,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(embeddings)
        self.embedding.weight.requires_grad_(not freeze)
        self.proj = nn.Linear(embed_dim, out_dim) if out_dim != embed_dim else None
        self.positional = positional
        if positional:
            self.register_buffer("pe", sinusoidal_encoding(max_len, out_dim), persistent=False)

    def forward(self, inp: tuple[torch.Tensor, torch.Tensor]):
        tokens, lengths = inp
        h = self.embedding(tokens)
        if self.proj is not None:
            h = self.proj(h)
        t = tokens.shape[1]
        if self.positional:
            pe = self.pe[:t] if t <= self.pe.shape[0] else sinusoidal_encoding(t, h.shape[-1])
            h = h + pe.to(h.device, h.dtype)
        valid = valid_mask(lengths, t, h.device)
        return torch.where(valid[..., None], h, h.new_zeros(())), lengths


class BiLSTMLayer(nn.Module):
    """One bidirectional LSTM layer over the valid positions; padding comes back as 0.

    Two one-direction ``nn.LSTM`` run on the padded batch instead of one packed bidirectional
    LSTM: on the CPU a packed LSTM's forward + backward is about 4x slower (B=64, T=120), and
    it needs the lengths on the host. The forward direction reads the batch as it is (padding
    trails, so a valid output never sees it); the backward direction reads each row reversed
    within its own length, and its outputs are put back in place with the same index (the
    reversal is its own inverse). That is what the packed LSTM computes, to rounding.
    Parameters are created and initialised in ``nn.LSTM(bidirectional=True)``'s order, and its
    state-dict keys (``lstm.*``, ``lstm.*_reverse``) still load.
    """

    def __init__(self, in_dim: int, hidden_per_direction: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(in_dim, hidden_per_direction, batch_first=True)
        self.bwd = nn.LSTM(in_dim, hidden_per_direction, batch_first=True)
        self.register_load_state_dict_pre_hook(_bidirectional_keys)

    def forward(self, inp: tuple[torch.Tensor, torch.Tensor]):
        x, lengths = inp
        t = x.shape[1]
        lens = lengths.to(x.device, non_blocking=True)[:, None]
        pos = torch.arange(t, device=x.device)[None, :]
        valid = pos < lens
        reverse = torch.where(valid, lens - 1 - pos, pos)[..., None]  # [B, T, 1]
        forward, _ = self.fwd(x)
        backward, _ = self.bwd(x.gather(1, reverse.expand_as(x)))
        backward = backward.gather(1, reverse.expand_as(backward))
        out = torch.cat([forward, backward], dim=-1)
        return torch.where(valid[..., None], out, out.new_zeros(())), lengths


def _bidirectional_keys(module, state_dict, prefix, *_args) -> None:
    """Rename a packed ``nn.LSTM(bidirectional=True)``'s keys (earlier checkpoints) in place."""
    old = prefix + "lstm."
    for key in [k for k in state_dict if k.startswith(old)]:
        name = key[len(old) :]
        new = "bwd." + name[: -len("_reverse")] if name.endswith("_reverse") else "fwd." + name
        state_dict[prefix + new] = state_dict.pop(key)


class EncoderLayer(nn.Module):
    """One Transformer encoder layer; padded keys are masked out, padded outputs set to 0."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True)

    def forward(self, inp: tuple[torch.Tensor, torch.Tensor]):
        x, lengths = inp
        valid = valid_mask(lengths, x.shape[1], x.device)
        out = self.layer(x, src_key_padding_mask=~valid)
        return torch.where(valid[..., None], out, out.new_zeros(())), lengths


class TextClassifier(nn.Module):
    """FC-tanh-FC over the pooled last-stage output (masked mean, or final LSTM states)."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, num_classes)
        )

    def forward(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h, lengths = out
        z = masked_mean(h, lengths) if self.pool == "mean" else last_states(h, lengths)
        return self.net(z)


class TextStagedModel(StagedModel):
    """A StagedModel whose stages map (h, lengths) tuples; features are masked means."""

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of the dataset's padded length T (all <unk>) with full lengths."""
        t = self.input_shape[0]
        tokens = torch.full((batch_size, t), UNK_ID, dtype=torch.int64)
        return tokens, torch.full((batch_size,), t, dtype=torch.int64)

    def feature_dim(self, stage_index: int) -> int:
        return self.stage_shapes[stage_index][-1]

    def features(self, stage_index: int, out) -> torch.Tensor:
        h, lengths = out
        return masked_mean(h, lengths)


def _text_input_len(name: str, input_shape: tuple[int, ...], max_len: int | None) -> int:
    if len(input_shape) == 0:
        return max_len or DRY_RUN_T
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise ConfigError(
            f"{name} is a text model: its input is token ids [T] from a text dataset "
            f"(ag-news, imdb, dbpedia, sst2, text-csv), not input shape {input_shape}"
        )
    return int(input_shape[0])


def _embedding_setup(
    name: str, vocab_size: int | None, embed_dim: int | None, embeddings: torch.Tensor | None
) -> tuple[int, int]:
    if embeddings is not None:
        if embeddings.dim() != 2:
            raise ConfigError(f"{name}: embeddings must be a [vocab, dim] matrix")
        v, d = embeddings.shape
        if vocab_size is not None and vocab_size != v:
            raise ConfigError(
                f"{name}: vocab_size {vocab_size} != {v} rows of the embedding matrix; "
                f"build the embeddings for the dataset's vocabulary"
            )
        if embed_dim is not None and embed_dim != d:
            raise ConfigError(
                f"{name}: embed_dim {embed_dim} != the embeddings' {d} columns; "
                f"set embed_dim to {d} or use {embed_dim}-d vectors"
            )
        vocab_size, embed_dim = v, d
    vocab_size = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    embed_dim = EMBED_DIM if embed_dim is None else embed_dim
    if vocab_size < 2:
        raise ConfigError(f"{name}: vocab_size {vocab_size} must be >= 2 (<pad> and <unk>)")
    if embed_dim < 1:
        raise ConfigError(f"{name}: embed_dim {embed_dim} must be positive, e.g. 300")
    return vocab_size, embed_dim


def _layout(
    name: str, num_stages: int, num_layers: int | None, partition: Sequence[int] | None
) -> tuple[int, list[int]]:
    """(number of recurrent/encoder layers, partition over embedding + layers)."""
    if num_layers is None:
        if num_stages < 2:
            raise ConfigError(
                f"--stages {num_stages} does not fit {name}: stage 1 is the embedding and each "
                f"later stage one {'LSTM' if name == 'lstm' else 'encoder'} layer, so K >= 2 "
                f"(K=1 would be an embedding-only model); choose --stages 2 or more"
            )
        num_layers = num_stages - 1
    if num_layers < 1:
        raise ConfigError(f"{name}: num_layers {num_layers} must be >= 1")
    check_num_stages(num_stages, 1 + num_layers, name)
    if partition is None:
        if num_stages == 1:
            partition = [1 + num_layers]
        else:  # the embedding alone in stage 1, the layers spread over the rest
            partition = [1, *even_partition(num_layers, num_stages - 1)]
    return num_layers, list(partition)


@register_model("lstm", help="bidirectional LSTM: embedding stage + one BiLSTM layer per stage")
def lstm(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    vocab_size: int | None = None,
    embed_dim: int | None = None,
    embeddings: torch.Tensor | None = None,
    freeze_embeddings: bool = False,
    max_len: int | None = None,
    num_layers: int | None = None,
    hidden: int = LSTM_HIDDEN,
    classifier_hidden: int = CLASSIFIER_HIDDEN,
    pool: str = "mean",
) -> StagedModel:
    """Embedding, then BiLSTM layers (``hidden`` units over both directions, times ``width``)."""
    if pool not in ("mean", "last"):
        raise ConfigError(f"lstm: unknown pool {pool!r}; choose mean or last")
    t = _text_input_len("lstm", input_shape, max_len)
    vocab_size, embed_dim = _embedding_setup("lstm", vocab_size, embed_dim, embeddings)
    num_layers, partition = _layout("lstm", num_stages, num_layers, partition)
    per_dir = max(2, int(round(hidden * width / 2)))
    units: list[nn.Module] = [
        Embed(vocab_size, embed_dim, embed_dim, embeddings, freeze_embeddings, False, t)
    ]
    d = embed_dim
    for _ in range(num_layers):
        units.append(BiLSTMLayer(d, per_dir))
        d = 2 * per_dir
    head = max(8, int(round(classifier_hidden * width)))
    classifier = TextClassifier(d, head, num_classes, pool)
    model = TextStagedModel(
        units, classifier, (t,), num_classes, partition, name="lstm", kind="text"
    )
    model.vocab_size, model.embed_dim = vocab_size, embed_dim
    return model


@register_model(
    "transformer",
    help="Transformer encoder: embedding(+positional) stage + one encoder layer per stage",
)
def transformer(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    vocab_size: int | None = None,
    embed_dim: int | None = None,
    embeddings: torch.Tensor | None = None,
    freeze_embeddings: bool = False,
    max_len: int | None = None,
    num_layers: int | None = None,
    heads: int = HEADS,
    ffn_mult: float = 4.0,
    dropout: float = DROPOUT,
    positional: bool = True,
    classifier_hidden: int = CLASSIFIER_HIDDEN,
    pool: str = "mean",
) -> StagedModel:
    """Embedding (+ sinusoidal positions), then post-norm encoder layers of d_model =
    embed_dim * width (rounded to a multiple of ``heads``)."""
    if pool != "mean":
        raise ConfigError(f"transformer: pool {pool!r} is not supported; use mean")
    if heads < 1:
        raise ConfigError(f"transformer: heads {heads} must be >= 1, e.g. 6")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"transformer: dropout {dropout} must be in [0, 1), e.g. 0.1")
    t = _text_input_len("transformer", input_shape, max_len)
    vocab_size, embed_dim = _embedding_setup("transformer", vocab_size, embed_dim, embeddings)
    num_layers, partition = _layout("transformer", num_stages, num_layers, partition)
    d_model = heads * max(1, int(round(embed_dim * width / heads)))
    ffn = max(4, int(round(ffn_mult * d_model)))
    units: list[nn.Module] = [
        Embed(
            vocab_size,
            embed_dim,
            d_model,
            embeddings,
            freeze_embeddings,
            positional,
            max(t, max_len or 0),
        )
    ]
    units += [EncoderLayer(d_model, heads, ffn, dropout) for _ in range(num_layers)]
    head = max(8, int(round(classifier_hidden * width)))
    classifier = TextClassifier(d_model, head, num_classes, "mean")
    model = TextStagedModel(
        units, classifier, (t,), num_classes, partition, name="transformer", kind="text"
    )
    model.vocab_size, model.embed_dim = vocab_size, embed_dim
    return model


# Lets callers (the CLI's `params`, tests iterating over MODELS) tell text models apart.
lstm.kind = "text"  # type: ignore[attr-defined]
transformer.kind = "text"  # type: ignore[attr-defined]
