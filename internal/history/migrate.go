package history

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one schema version. Its statements must be safe to run again
// (CREATE TABLE IF NOT EXISTS …): DDL commits implicitly, so a migration
// interrupted halfway is re-run from its first statement.
type migration struct {
	version int
	name    string
	stmts   []string
}

const tableOpts = ` ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`

const dayPartitioned = `
PARTITION BY RANGE (ts) (PARTITION pmax VALUES LESS THAN MAXVALUE)`

// migrations is the schema history, in version order. Never edit an applied
// migration; append a new one.
var migrations = []migration{
	{1, "history tables", []string{
		`CREATE TABLE IF NOT EXISTS channels (
  site VARCHAR(64) NOT NULL,
  channel VARCHAR(128) NOT NULL,
  registration VARCHAR(128) NOT NULL DEFAULT '',
  template VARCHAR(128) NOT NULL DEFAULT '',
  name VARCHAR(128) NOT NULL DEFAULT '',
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  state VARCHAR(16) NOT NULL,
  PRIMARY KEY (site, channel)
)` + tableOpts,
		`CREATE TABLE IF NOT EXISTS data (
  site VARCHAR(64) NOT NULL,
  channel VARCHAR(128) NOT NULL,
  point VARCHAR(128) NOT NULL,
  model VARCHAR(128) NOT NULL DEFAULT '',
  point_name VARCHAR(128) NOT NULL DEFAULT '',
  value VARCHAR(64) NOT NULL,
  value_num DOUBLE NULL,
  ts BIGINT NOT NULL,
  PRIMARY KEY (site, channel, point, ts),
  KEY data_model_point_ts (site, model, point_name, ts)
)` + tableOpts + dayPartitioned,
		`CREATE TABLE IF NOT EXISTS connection_history (
  site VARCHAR(64) NOT NULL,
  event_id VARCHAR(32) NOT NULL,
  event VARCHAR(16) NOT NULL,
  channel VARCHAR(128) NOT NULL DEFAULT '',
  listener VARCHAR(128) NOT NULL DEFAULT '',
  registration VARCHAR(128) NOT NULL DEFAULT '',
  remote VARCHAR(64) NOT NULL DEFAULT '',
  reason VARCHAR(512) NOT NULL DEFAULT '',
  ts BIGINT NOT NULL,
  PRIMARY KEY (site, event_id, ts),
  KEY connection_history_channel_ts (site, channel, ts),
  KEY connection_history_ts (site, ts)
)` + tableOpts + dayPartitioned,
		`CREATE TABLE IF NOT EXISTS alarms (
  site VARCHAR(64) NOT NULL,
  model VARCHAR(128) NOT NULL,
  point VARCHAR(128) NOT NULL,
  kind VARCHAR(16) NOT NULL DEFAULT '',
  level VARCHAR(16) NOT NULL DEFAULT '',
  value VARCHAR(64) NOT NULL DEFAULT '',
  limit_value VARCHAR(64) NOT NULL DEFAULT '',
  raised_ts BIGINT NOT NULL,
  cleared_ts BIGINT NULL,
  acknowledged_ts BIGINT NULL,
  acknowledged_by VARCHAR(64) NULL,
  PRIMARY KEY (site, model, point, raised_ts),
  KEY alarms_raised (site, raised_ts)
)` + tableOpts,
		`CREATE TABLE IF NOT EXISTS controls (
  site VARCHAR(64) NOT NULL,
  command_id VARCHAR(32) NOT NULL,
  model VARCHAR(128) NOT NULL DEFAULT '',
  control VARCHAR(128) NOT NULL DEFAULT '',
  channel VARCHAR(128) NOT NULL DEFAULT '',
  point VARCHAR(128) NOT NULL DEFAULT '',
  value VARCHAR(64) NOT NULL DEFAULT '',
  status VARCHAR(16) NOT NULL,
  code VARCHAR(32) NOT NULL DEFAULT '',
  message VARCHAR(512) NOT NULL DEFAULT '',
  user VARCHAR(64) NULL,
  ts BIGINT NOT NULL,
  PRIMARY KEY (site, command_id),
  KEY controls_ts (site, ts)
)` + tableOpts,
	}},
}

// migrate applies the migrations not yet recorded in schema_migrations, in
// version order, each once, holding a lock so concurrent starts wait.
func (s *Store) migrate(ctx context.Context, list []migration) error {
	return s.withLock(ctx, "migrate", func(conn *sql.Conn) error {
		if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INT NOT NULL PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
)`+tableOpts); err != nil {
			return fmt.Errorf("history: migrate: create schema_migrations: %w", err)
		}
		applied := map[int]bool{}
		rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("history: migrate: read versions: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("history: migrate: read versions: %w", err)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("history: migrate: read versions: %w", err)
		}
		last := 0
		for _, m := range list {
			if m.version <= last {
				return fmt.Errorf("history: migrate: version %d listed after %d", m.version, last)
			}
			last = m.version
			if applied[m.version] {
				continue
			}
			for i, stmt := range m.stmts {
				if _, err := conn.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("history: migrate: version %d (%s) statement %d: %w", m.version, m.name, i+1, err)
				}
			}
			if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.version, m.name); err != nil {
				return fmt.Errorf("history: migrate: record version %d: %w", m.version, err)
			}
			s.log.Info("history schema migrated", "version", m.version, "name", m.name)
		}
		return nil
	})
}
