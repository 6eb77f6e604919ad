"""The parallel training engine (one loop; MA/BMUF/DDP sync objects; non-interfering averagers).

train.py (the loop), options.py (checked flags, run settings), workers.py (local workers,
one step), sync.py (MA, BMUF, DDP, none; the interfering-EMA wrapper), group.py
(torch.distributed or simulated workers), launch.py (torchrun on loopback), ema.py and
averagers.py (EMAs, icefall's average, Kaldi's combination), posthoc.py (post-hoc EMA),
state.py + checkpoint.py (the checkpoint schema and files), export.py (final models and
priors), flat.py (model state as one vector), metrics.py, backend.py (steps_py.nnet
binding; tests inject a toy one).
"""
