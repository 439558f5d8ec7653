"""Stage 2, learn: the transformer trained across episodes of learning histories.

``dataset`` (training windows), ``encoders`` and ``model`` (the causal transformer), ``train``
(the loop, single process or DDP), ``checkpoint``. Imports ``ad.data``, never ``ad.evaluation``.
"""
