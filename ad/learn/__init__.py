"""Stage 2, learn: the transformer trained across episodes of learning histories.

``training_data`` (the checked training runs), ``kept_streams`` (which steps a window may span),
``windows`` (the window stores), ``batches`` (each step's windows), ``encoders`` and ``model``
(the causal transformer), ``train`` (the loop, single process or DDP), ``checkpoint``. Imports
``ad.data``, never ``ad.evaluation``.
"""
