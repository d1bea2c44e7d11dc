"""Token mixers, one file each. Contract: `Mixer(dim, grid, num_prefix_tokens, ...)` and
`forward(x: (B, N, C), grid: (H, W)) -> (B, N, C)`, N = num_prefix_tokens + H * W."""
