"""The token grid of a chain of soft splits (Tokens-to-Token ViT, Yuan et al. 2021), as plain arithmetic.

A soft split is `nn.Unfold(kernel, stride, padding)`: overlapping k×k windows, each window's values
concatenated into one token. T2T-ViT chains three (kernel 7/3/3, stride 4/2/2, padding 2/1/1), taking a
224-px image to a 56×56, 28×28 and finally 14×14 token grid. We call a chain *whole* when every split
divides the side of its input grid by exactly its stride, so the final grid is img_size / (s0·s1·…), the
way a hard split's grid is img_size / patch_size. That needs two things of each split:
  - the stride divides the side of the grid it gets, and
  - the padding fits kernel and stride: Unfold gives ⌊(n + 2p − k) / s⌋ + 1 windows per side, which is
    n / s exactly when k − s ≤ 2p ≤ k − 1 (224 px, k 7, s 4, p 2: ⌊221 / 4⌋ + 1 = 56 = 224 / 4).
A kernel smaller than its stride skips pixels between windows. Anything else drops border pixels or
leaves a fractional grid, and is refused with the numbers.

No torch here: the model spec checks a configuration with it before anything is built.
"""

from __future__ import annotations


def padding_range(kernel: int, stride: int) -> list[int]:
    """The paddings with which a (kernel, stride) split divides the grid by exactly its stride."""
    return [p for p in range(kernel) if kernel - stride <= 2 * p <= kernel - 1]


def soft_split_sides(img_size: int, kernels, strides, paddings) -> list[int]:
    """The side of the token grid after each soft split, e.g. 224, (7, 3, 3), (4, 2, 2), (2, 1, 1) ->
    [56, 28, 14]. Raises ValueError naming the split and the numbers when the chain is not whole."""
    kernels, strides, paddings = tuple(kernels), tuple(strides), tuple(paddings)
    if not kernels or not len(kernels) == len(strides) == len(paddings):
        raise ValueError(f"soft splits need one kernel, stride and padding each, got kernels {kernels}, "
                         f"strides {strides}, paddings {paddings}")
    sides, n = [], img_size
    for i, (k, s, p) in enumerate(zip(kernels, strides, paddings, strict=True)):
        where = f"soft split {i} (kernel {k}, stride {s}, padding {p}) of a {img_size}-px image"
        if k < s:
            raise ValueError(f"{where}: a kernel smaller than its stride skips {s - k} pixel(s) between "
                             f"windows; use a kernel of at least {s}")
        if n % s:
            raise ValueError(f"{where}: its input grid is {n}×{n}, not a multiple of stride {s}, so the "
                             f"token grid would be {n}/{s} = {n / s:g} per side; the image side must be a "
                             f"multiple of the product of the strides")
        out = (n + 2 * p - k) // s + 1
        if out != n // s:
            raise ValueError(f"{where}: Unfold gives ⌊({n} + 2·{p} − {k}) / {s}⌋ + 1 = {out} tokens per "
                             f"side, not {n}/{s} = {n // s}; with kernel {k} and stride {s} the padding "
                             f"must be one of {padding_range(k, s)}")
        n = out
        sides.append(n)
    return sides
