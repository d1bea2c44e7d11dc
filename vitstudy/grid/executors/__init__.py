"""Executors run the cells of a grid and know nothing about models: each cell is `training.run.run_cell`."""
