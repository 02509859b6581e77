package history

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Defaults applied by Open to zero Options fields and DSN settings.
const (
	DefaultMaxOpenConns    = 4
	DefaultRetentionDays   = 30
	DefaultPartitionsAhead = 3
	DefaultDialTimeout     = 5 * time.Second
	DefaultIOTimeout       = 60 * time.Second
)

// Options configures a Store.
type Options struct {
	// Site names this box in every row (required, at most 64 characters of
	// [A-Za-z0-9_.-]).
	Site string
	// MaxOpenConns bounds the connection pool (default 4).
	MaxOpenConns int
	// RetentionDays is how many whole UTC days of data and connection
	// history DropExpired keeps before today (default 30).
	RetentionDays int
	// PartitionsAhead is how many days after today EnsurePartitions
	// prepares (default 3).
	PartitionsAhead int
	// DisableLoadData makes Write always use multi-row INSERT.
	DisableLoadData bool
	// ReadOnly opens the store for reading only: Open applies no migration
	// and creates no partition, it only checks that the schema is there, so
	// the database user needs no more than SELECT. Write, EnsurePartitions
	// and DropExpired fail with ErrReadOnly.
	ReadOnly bool
	// Logger receives migration, partition and fallback messages
	// (default slog.Default()). DSNs are logged with the password redacted.
	Logger *slog.Logger
}

var siteRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// loadState records whether LOAD DATA LOCAL INFILE works on this server.
const (
	loadUnknown int32 = iota
	loadWorks
	loadRefused
)

// Store reads and writes the history tables of one site.
type Store struct {
	db     *sql.DB
	site   string
	opts   Options
	log    *slog.Logger
	dbName string

	handlerPrefix string // unique per Store, for reader-handler names
	handlerSeq    atomic.Uint64
	load          atomic.Int32 // loadUnknown, loadWorks or loadRefused

	// loadData runs one LOAD DATA statement; tests replace it to simulate a
	// server that refuses LOCAL INFILE.
	loadData func(ctx context.Context, tx *sql.Tx, stmt string) (sql.Result, error)

	stats counters
}

// Open connects to the database named in dsn, applies pending migrations and
// creates the partitions for today and the days ahead.
//
// The DSN is parsed and adjusted: allowAllFiles is always off (LOAD DATA only
// reads registered in-memory readers), interpolateParams is on, and dial, read
// and write timeouts default to 5 s, 60 s and 60 s when the DSN sets none.
// interpolateParams sends each statement with its arguments in one round trip
// instead of prepare, execute and close; batch INSERTs have a different shape
// almost every time, so a server-side prepared statement would never be
// reused, and the driver refuses to interpolate when the connection's escaping
// is unsafe (NO_BACKSLASH_ESCAPES).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if !siteRE.MatchString(opts.Site) {
		return nil, fmt.Errorf("history: site %q: must be 1-64 characters of [A-Za-z0-9_.-]", opts.Site)
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = DefaultMaxOpenConns
	}
	if opts.RetentionDays <= 0 {
		opts.RetentionDays = DefaultRetentionDays
	}
	if opts.PartitionsAhead <= 0 {
		opts.PartitionsAhead = DefaultPartitionsAhead
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("history: invalid DSN")
	}
	if cfg.DBName == "" {
		return nil, errors.New("history: DSN names no database")
	}
	cfg.AllowAllFiles = false
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultIOTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultIOTimeout
	}
	log := opts.Logger.With("component", "history", "dsn", RedactDSN(dsn))
	cfg.Logger = driverLogger{log}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)

	var prefix [6]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		db.Close()
		return nil, fmt.Errorf("history: %w", err)
	}
	s := &Store{
		db:            db,
		site:          opts.Site,
		opts:          opts,
		log:           log,
		dbName:        cfg.DBName,
		handlerPrefix: "voltedge-history-" + hex.EncodeToString(prefix[:]),
	}
	s.loadData = func(ctx context.Context, tx *sql.Tx, stmt string) (sql.Result, error) {
		return tx.ExecContext(ctx, stmt)
	}
	if opts.DisableLoadData {
		s.load.Store(loadRefused)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("history: connect: %w", err)
	}
	if opts.ReadOnly {
		if err := s.checkSchema(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}
	if err := s.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.EnsurePartitions(ctx, time.Now()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// ErrReadOnly is returned by the writing methods of a store opened with
// Options.ReadOnly.
var ErrReadOnly = errors.New("history: the store was opened read-only")

// ErrNoSchema means the database has no history tables yet (or not all of
// the versions this build knows): netsrv creates them when it starts.
var ErrNoSchema = errors.New("history: the database has no history tables yet (netsrv creates them)")

// checkSchema reports ErrNoSchema unless every migration this build knows
// is recorded in schema_migrations.
func (s *Store) checkSchema(ctx context.Context) error {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version <= ?", migrations[len(migrations)-1].version).Scan(&n)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1146 { // ER_NO_SUCH_TABLE
		return ErrNoSchema
	}
	if err != nil {
		return fmt.Errorf("history: check schema: %w", err)
	}
	if n < len(migrations) {
		return ErrNoSchema
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.db.Close() }

// Site returns the site this Store writes and reads.
func (s *Store) Site() string { return s.site }

// driverLogger sends the driver's messages (such as "unexpected EOF" when a
// connection breaks) to this store's logger instead of the driver's global
// one.
type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) { l.log.Warn("mysql driver: " + fmt.Sprint(v...)) }

// RedactDSN returns dsn with its password replaced by "xxxxx", suitable for
// logs. A DSN that does not parse is replaced entirely.
func RedactDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "<invalid DSN>"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}

// lockName returns a GET_LOCK name private to this database (lock names are
// server-wide and at most 64 characters).
func (s *Store) lockName(purpose string) string {
	name := "voltedge.history." + purpose + "." + s.dbName
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// withLock runs fn on one connection while holding the named lock.
func (s *Store) withLock(ctx context.Context, purpose string, fn func(conn *sql.Conn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("history: %s: %w", purpose, err)
	}
	defer conn.Close()
	name := s.lockName(purpose)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
		return fmt.Errorf("history: %s: get lock: %w", purpose, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("history: %s: lock %q not acquired within 60 s", purpose, name)
	}
	defer func() {
		// A fresh context: the lock must be released even when ctx is done.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(rctx, "DO RELEASE_LOCK(?)", name); err != nil {
			// Closing the session releases the lock as well.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn(conn)
}

// Ping checks that the database can be reached.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("history: connect: %w", err)
	}
	return nil
}
