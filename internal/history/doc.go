// Package history is the MySQL/MariaDB history store shared by netsrv, which
// uploads samples, connection events, alarms and control outcomes, and modsrv,
// which serves history and exports from the same tables. The services never
// import each other; the schema, its migrations, the batch writes and the read
// queries all live here.
//
// # Schema
//
// Every table has a site column and every unique key starts with it, so many
// boxes can upload to one central database. Tables are InnoDB, utf8mb4 with
// binary collation (channel ids and point names are case-sensitive, as in
// Redis). Times are BIGINT Unix milliseconds.
//
//   - channels: one row per (site, channel), upserted from ChannelState.
//   - data: one row per (site, channel, point, ts) with the value exactly as
//     received (value, VARCHAR(40)) and as a DOUBLE for aggregation
//     (value_num, NULL when not numeric); partitioned by UTC day on ts.
//   - connection_history: link events keyed by (site, event_id, ts), where
//     event_id is the Redis stream id; partitioned by UTC day on ts.
//   - alarms: one row per (site, model, point, raised_ts); a clear or an
//     acknowledgement updates the row. The limit is in limit_value, since
//     LIMIT is a reserved word.
//   - controls: the audit trail of control outcomes, one row per
//     (site, command_id).
//
// Schema changes are versioned migrations recorded in schema_migrations.
// Open applies the missing ones in order while holding a named lock
// (GET_LOCK), so services starting together do not race.
//
// The clustered key of data is (site, channel, point, ts), so the samples of
// one point are stored together and a history read touches few pages; reads
// by model and point name go through the (site, model, point_name, ts) index.
//
// # Partitions
//
// data and connection_history are partitioned by RANGE on ts, one partition
// per UTC day named pYYYYMMDD plus a catch-all pmax. EnsurePartitions splits
// pmax to create days ahead; DropExpired drops whole days older than the
// retention, so expiring history never DELETEs rows.
//
// # Writes
//
// Write stores a Batch in one transaction. Samples and connection events are
// idempotent: a re-delivered row is skipped and counted as a duplicate (the
// first copy wins). Bulk rows go through LOAD DATA LOCAL INFILE streamed from
// memory when the server allows it, and through multi-row INSERT … ON
// DUPLICATE KEY UPDATE otherwise; both paths store the same rows.
// IsUnavailable tells a caller whether a failed write should be spooled and
// retried (server unreachable) or is a problem with the data.
package history
