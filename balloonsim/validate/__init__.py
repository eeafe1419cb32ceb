"""`balloonsim validate`: the model against recordings of real Linux kernels (validation/recorded/*.json).

parse.py reads what the guests printed, model.py replays each recording's steps on the kernel model,
compare.py lines the two up quantity by quantity, known.py reads the listed known disagreements, cli.py is
the command.
"""
