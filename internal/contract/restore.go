package contract

// Field names of the configuration marker keys.ConfigRestore, written by
// comsrv once the run-time configuration (keys.RuntimeConfig) of a Redis
// run is in place, and read by modsrv's /health.
const (
	// RestoreRunID is the run_id (INFO server) of the Redis run the marker is for.
	RestoreRunID = "run_id"
	// RestoreAt is when the configuration was checked and restored, Unix ms.
	RestoreAt = "restored_at"
	// RestoreKeys lists the keys restored from the snapshot, comma-separated.
	RestoreKeys = "restored"
	// RestoreKept lists the snapshot's keys left alone because Redis had them, comma-separated.
	RestoreKept = "kept"
	// RestoreSnapshotAt is when the snapshot used was written, Unix ms (0: no snapshot).
	RestoreSnapshotAt = "snapshot_at"
	// RestoreProblem, when not empty, says why configuration keys could not
	// be restored (the snapshot is corrupt or unreadable). comsrv clears it
	// once the configuration has been changed since.
	RestoreProblem = "problem"
)
