"""Stage 1, data: source algorithms learn tasks while every step is recorded to HDF5.

``sources`` (SB3 algorithms, UCB, your own), ``collect`` (runs in a process pool, shards),
``histories`` (the per-run HDF5 format; the only h5py user), ``manifest`` (dataset folders),
``spaces`` (Gymnasium spaces as JSON). Imports nothing from ``ad.learn`` or ``ad.evaluation``.
"""
