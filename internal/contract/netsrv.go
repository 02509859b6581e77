package contract

// Fields of netsrv's status hash (keys.NetsrvStatus). Backlog fields are
// NetsrvBacklogPrefix + the stream's name in netsrv.toml (data, events,
// alarms, controls), holding "<pending> <unread>" (unread -1: unknown).
const (
	NetsrvSite             = "site"
	NetsrvMySQL            = "mysql" // up, down or not configured
	NetsrvSpoolBytes       = "spool_bytes"
	NetsrvSpoolPending     = "spool_pending" // spool records not yet uploaded
	NetsrvSpoolOldestAgeS  = "spool_oldest_age_s"
	NetsrvSpoolDropped     = "spool_dropped" // records dropped at the spool's cap since netsrv started
	NetsrvRowsDirect       = "rows_direct"
	NetsrvRowsSpooled      = "rows_spooled"
	NetsrvRowsDrained      = "rows_drained"
	NetsrvBacklogPrefix    = "backlog_"
	NetsrvUpdatedAt        = "updated_at" // Unix ms
	NetsrvStatusIntervalMS = 5000
)
