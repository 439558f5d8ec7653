"""Gato's tokens for continuous values: mu-law companding, then uniform bins (Reed et al. 2022).

A value x is companded to ``F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1)``, clipped to
[-1, 1] and put into one of ``num_bins`` uniform bins on [-1, 1]; a token decodes to the inverse
companding of its bin's centre. Gato uses mu = 100, M = 256 and 1024 bins (section 2.1).

Every function takes a numpy array (the data path) or a torch tensor (the model) and returns the
same kind. Training windows are tokenised from arrays and the model's own actions at evaluation
from tensors, so a value must land in the same bin on both paths: numpy's and torch's log1p differ
in the last bit, which moves values on a bin edge. Tokens are therefore found by comparing the
values with the bin edges mapped back through the inverse companding (one float64 table, shared by
both paths), and decoded by looking up one table of bin-centre values; comparisons and lookups are
exact, so both paths agree bit for bit.

Round-trip error: companding's inverse ``G`` has slope ``G'(y) = log(M mu + 1) (|G(y)| + 1/mu)``,
so a value within half a bin width ``w / 2 = 1 / num_bins`` of its bin centre decodes to within

    |x - decode(encode(x))| <= (w / 2) log(M mu + 1) (M mu + 1)**(w / 2) (|x| + 1 / mu)

for |x| <= M: about 1% of |x| plus 1e-4 with Gato's parameters. Values beyond +-M go to the
outermost bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from ad.errors import UserError

Values = TypeVar("Values", np.ndarray, torch.Tensor)


def _float64(values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``values`` as float64 of the same kind: a tensor stays on its device."""
    if isinstance(values, torch.Tensor):
        return values.to(torch.float64)
    return np.asarray(values, dtype=np.float64)


def _xp(values: np.ndarray | torch.Tensor):
    """The array module of ``values``: numpy and torch share the functions used here."""
    return torch if isinstance(values, torch.Tensor) else np


def _check_finite(values: np.ndarray | torch.Tensor, what: str) -> None:
    finite = _xp(values).isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        total = int(finite.numel() if isinstance(finite, torch.Tensor) else finite.size)
        raise UserError(
            f"{bad} of {total} {what} are NaN or inf; tokens need finite values, so check where "
            f"the {what} come from"
        )


@dataclass(frozen=True)
class MuLawTokenizer:
    """Mu-law companding and uniform binning of continuous values into ``num_bins`` tokens.

    Attributes:
        mu: the companding strength (Gato: 100).
        max_value: M, the magnitude that compands to 1; larger ones share the outermost bins
            (Gato: 256).
        num_bins: the number of uniform bins on [-1, 1], tokens 0 .. num_bins - 1 (Gato: 1024).
    """

    mu: float = 100.0
    max_value: float = 256.0
    num_bins: int = 1024

    def __post_init__(self) -> None:
        for field in ("mu", "max_value"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"tokenizer {field} must be a positive number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"tokenizer {field} must be a positive number, got {value!r}")
        bins = self.num_bins
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise UserError(f"tokenizer num_bins must be an integer >= 2, got {bins!r}")

    @property
    def _log_scale(self) -> float:
        return math.log1p(self.max_value * self.mu)  # log(M mu + 1)

    @property
    def bin_width(self) -> float:
        """The width of one bin in companded units: 2 / num_bins."""
        return 2.0 / self.num_bins

    def compand(self, values: Values) -> Values:
        """Mu-law companding F(x), not clipped: |F(x)| > 1 for |x| > M.

        Args:
            values: any real array or tensor.

        Returns:
            F(values), the same kind and shape, float64 (float inputs keep their float dtype).
        """
        x = _float64(values)
        xp = _xp(x)
        y = xp.sign(x) * xp.log1p(xp.abs(x) * self.mu) / self._log_scale
        return _like_float(y, values)

    def expand(self, companded: Values) -> Values:
        """The inverse of :meth:`compand`: ``G(y) = sgn(y) ((M mu + 1)**|y| - 1) / mu``."""
        y = _float64(companded)
        xp = _xp(y)
        x = xp.sign(y) * xp.expm1(xp.abs(y) * self._log_scale) / self.mu
        return _like_float(x, companded)

    def encode(self, values: Values, what: str = "values") -> Values:
        """Tokens of ``values``: companded, clipped to [-1, 1], binned.

        Args:
            values: finite real numbers, any shape (numpy array or torch tensor).
            what: what the values are, for the error message ("actions", "rewards").

        Returns:
            int64 tokens in 0 .. num_bins - 1 of the same shape and kind (on the same device).

        Raises:
            UserError: some values are NaN or inf (one line with their count).
        """
        x = _float64(values)
        _check_finite(x, what)
        edges, _ = _tables(self.mu, self.max_value, self.num_bins)
        # Token k holds edges[k-1] <= x < edges[k]: floor((F(x) + 1) / w), clipped to the bins,
        # without computing F(x). F(M) = 1 is the last bin's upper edge, inside the last bin.
        if isinstance(x, torch.Tensor):
            return torch.bucketize(x, torch.tensor(edges, device=x.device), right=True)
        return np.searchsorted(edges, x, side="right").astype(np.int64)

    def decode(self, tokens: Values, dtype: np.dtype | torch.dtype | None = None) -> Values:
        """Values of ``tokens``: the inverse companding of each bin's centre.

        Args:
            tokens: integers in 0 .. num_bins - 1, any shape (numpy array or torch tensor).
            dtype: the result's dtype; default float32 (numpy or torch).

        Returns:
            Values of the same shape and kind (on the same device).

        Raises:
            UserError: a token is outside 0 .. num_bins - 1 (one line with their count).
        """
        k = _float64(tokens)
        xp = _xp(k)
        outside = (k < 0) | (k > self.num_bins - 1) | (k != xp.floor(k))
        if bool(outside.any()):
            total = int(k.numel() if isinstance(k, torch.Tensor) else k.size)
            raise UserError(
                f"{int(outside.sum())} of {total} tokens are not integers in 0..{self.num_bins - 1}; "
                "decode tokens of a tokenizer with the same num_bins"
            )
        _, centres = _tables(self.mu, self.max_value, self.num_bins)
        if isinstance(k, torch.Tensor):
            values = torch.tensor(centres, device=k.device)[k.long()]
            return values.to(torch.float32 if dtype is None else dtype)
        return centres[k.astype(np.int64)].astype(np.float32 if dtype is None else dtype)


@lru_cache(maxsize=8)
def _tables(mu: float, max_value: float, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(inner bin edges, bin centres) in value space, float64: (num_bins - 1,), (num_bins,)."""
    tokenizer = MuLawTokenizer(mu, max_value, num_bins)
    width = tokenizer.bin_width
    edges = tokenizer.expand(-1.0 + width * np.arange(1, num_bins))
    centres = tokenizer.expand(-1.0 + width * (np.arange(num_bins) + 0.5))
    edges.flags.writeable = centres.flags.writeable = False  # shared by every caller
    return edges, centres


def _like_float(result: Values, original: np.ndarray | torch.Tensor) -> Values:
    """``result`` (float64) in the float dtype of ``original`` if it had one, else float64."""
    if isinstance(result, torch.Tensor):
        if isinstance(original, torch.Tensor) and original.is_floating_point():
            return result.to(original.dtype)
        return result
    dtype = np.asarray(original).dtype
    return result.astype(dtype) if np.issubdtype(dtype, np.floating) else result
