"""Stage 1, data: source algorithms learn tasks while every step is recorded to HDF5.

``collect`` (the command, top to bottom) over ``runs`` (the plan and one run), ``pool`` (runs here
or in a process pool), ``sources`` (SB3 algorithms, UCB, your own); ``histories`` (the per-run HDF5
format; h5py's importer with ``xland``, XLand-100B's reader) and ``history_reader`` (chunked
reads); ``manifest`` (dataset folders and their manifest), ``inspection`` (``--inspect``),
``spaces`` (Gymnasium spaces as JSON), ``minari_io`` (Minari export and import).
Imports nothing from ``ad.learn`` or ``ad.evaluation``.
"""
