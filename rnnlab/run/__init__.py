"""The run directory: the only interface between training and everything after it.

One concept per module, each importing only those above it in this list:

    layout      the file names, the status values, and how to read a run (imports no JAX)
    storage     local and gs:// paths; atomic writes; free space; what a full disk raises
    verify      checksums that tell a checkpoint that reads back from one that was changed
    checkpoint  orbax checkpoints of the train state, verified on restore
    saves       a training run's checkpoints: resume point, saves, the newest committed step
    experiment  config.json and vocab.json: whether a config and its data are the run's
    lock        the lock a training process holds on its run, and the reserve for a full disk
    logs        metrics.jsonl (and TensorBoard) and samples.txt, cut back on resume
    failures    what went wrong opening or writing a run, in one line
    rundir      `RunDir`: a run directory opened for training, made of the modules above
    resume      where the trials of a group start (stands above `rnnlab.tasks`: fresh states)
    load        a run's config, record and checkpoint for sampling, evaluation, diagnostics
                (stands above `rnnlab.tasks`)

Nothing here below `resume` and `load` imports tasks or models.
"""
