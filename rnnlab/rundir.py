"""Old import path of `rnnlab.run.rundir` (a run directory opened for training), kept working;
its helpers now live in `rnnlab.run.experiment`, `checkpoint` and `failures`."""
from rnnlab.run import checkpoint, experiment, failures, layout, lock, rundir

RunDir = rundir.RunDir
RunDirError = layout.RunDirError
FINGERPRINT, RECORD_DIGEST = experiment.FINGERPRINT, experiment.RECORD_DIGEST
RESUMABLE_KEYS = experiment.RESUMABLE_KEYS
SCHEDULES_OVER_ALL_STEPS = experiment.SCHEDULES_OVER_ALL_STEPS
_config_diff = experiment.config_diff
read_record = experiment.read_record
record_digest = experiment.record_digest
data_mismatch = experiment.data_mismatch
RESERVE_BYTES = lock.RESERVE_BYTES
CHECKPOINT_OVERHEAD = checkpoint.OVERHEAD
checkpoint_bytes = checkpoint.size
disk_full = failures.disk_full
