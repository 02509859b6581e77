package history

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// partitionedTables are the tables partitioned by UTC day on ts.
var partitionedTables = []string{"data", "connection_history"}

const dayMS = int64(24 * time.Hour / time.Millisecond)

// dayStart returns the Unix ms of 00:00 UTC of the day holding t.
func dayStart(t time.Time) int64 {
	u := t.UTC()
	return time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC).UnixMilli()
}

// partitionName names the partition holding the UTC day starting at ms.
func partitionName(dayStartMS int64) string {
	return "p" + time.UnixMilli(dayStartMS).UTC().Format("20060102")
}

// dayPartition is an existing day partition: rows with ts < bound.
type dayPartition struct {
	name  string
	bound int64
}

// dayPartitions lists the day partitions of table in bound order (pmax and
// partitions with other names are left out).
func dayPartitions(ctx context.Context, conn *sql.Conn, table string) ([]dayPartition, error) {
	rows, err := conn.QueryContext(ctx, `SELECT PARTITION_NAME, PARTITION_DESCRIPTION
FROM information_schema.PARTITIONS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL
ORDER BY PARTITION_ORDINAL_POSITION`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dayPartition
	for rows.Next() {
		var name, desc string
		if err := rows.Scan(&name, &desc); err != nil {
			return nil, err
		}
		if len(name) != 9 || name[0] != 'p' {
			continue
		}
		bound, err := strconv.ParseInt(desc, 10, 64)
		if err != nil {
			continue // MAXVALUE
		}
		out = append(out, dayPartition{name, bound})
	}
	return out, rows.Err()
}

// EnsurePartitions makes sure data and connection_history have a partition
// for every UTC day from the day of now to PartitionsAhead days after it, by
// splitting pmax (rows already in pmax move to their day). Days up to the
// newest existing partition are already covered; a gap after it is filled
// for the days within the retention. It is idempotent and safe to run from
// several processes.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time) error {
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	first := dayStart(now)
	last := first + int64(s.opts.PartitionsAhead)*dayMS
	return s.withLock(ctx, "partitions", func(conn *sql.Conn) error {
		for _, table := range partitionedTables {
			parts, err := dayPartitions(ctx, conn, table)
			if err != nil {
				return fmt.Errorf("history: ensure partitions of %s: %w", table, err)
			}
			// Missing days within the retention are created too (after a
			// long stop, late rows then expire on time); the first new
			// partition also takes any older gap.
			start := first - int64(s.opts.RetentionDays)*dayMS
			if n := len(parts); n == 0 {
				start = first
			} else if parts[n-1].bound > start {
				start = parts[n-1].bound
			}
			var defs []string
			var names []string
			for day := start; day <= last; day += dayMS {
				defs = append(defs, fmt.Sprintf("PARTITION %s VALUES LESS THAN (%d)", partitionName(day), day+dayMS))
				names = append(names, partitionName(day))
			}
			if len(defs) == 0 {
				continue
			}
			stmt := "ALTER TABLE " + table + " REORGANIZE PARTITION pmax INTO (" +
				strings.Join(defs, ", ") + ", PARTITION pmax VALUES LESS THAN MAXVALUE)"
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("history: ensure partitions of %s: %w", table, err)
			}
			s.log.Info("history partitions created", "table", table, "partitions", names)
		}
		return nil
	})
}

// DropExpired drops the day partitions of data and connection_history that
// end before RetentionDays days before the day of now, so the history keeps
// RetentionDays whole days plus today. Rows are never DELETEd. Partitions
// are shared by all sites of the database, so on a central database the
// store with the shortest retention decides. It is idempotent.
func (s *Store) DropExpired(ctx context.Context, now time.Time) error {
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	cutoff := dayStart(now) - int64(s.opts.RetentionDays)*dayMS
	return s.withLock(ctx, "partitions", func(conn *sql.Conn) error {
		for _, table := range partitionedTables {
			parts, err := dayPartitions(ctx, conn, table)
			if err != nil {
				return fmt.Errorf("history: drop expired partitions of %s: %w", table, err)
			}
			var names []string
			for _, p := range parts {
				if p.bound <= cutoff {
					names = append(names, p.name)
				}
			}
			if len(names) == 0 {
				continue
			}
			if _, err := conn.ExecContext(ctx, "ALTER TABLE "+table+" DROP PARTITION "+strings.Join(names, ", ")); err != nil {
				return fmt.Errorf("history: drop expired partitions of %s: %w", table, err)
			}
			s.log.Info("history partitions dropped", "table", table, "partitions", names)
		}
		return nil
	})
}
