"""Stage 6: parallel training engine (one loop; MA/BMUF/DDP sync objects; non-interfering EMA).

train.py (CLI and loop), group.py (torch.distributed or simulated workers), sync.py,
ema.py, flat.py (model state as one vector), checkpoint.py, metrics.py, backend.py
(steps_py.nnet binding), toy.py (tiny backend for tests and benchmarks).
"""
