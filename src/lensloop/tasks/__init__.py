"""Tasks: what is learnt from labels (classify now; count and segment to come).

Each task module holds its data loading, metrics and post-processing; trainers in
:mod:`lensloop.train` take that shape.
"""
