package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/keys"
)

// Limits of the history routes.
const (
	// MaxHistorySpan bounds to-from of every history query.
	MaxHistorySpan = 400 * 24 * time.Hour
	// DefaultHistorySpan is the range when from is not given.
	DefaultHistorySpan = 24 * time.Hour
	// MinHistoryStep is the smallest downsampling step.
	MinHistoryStep = time.Second
	// DefaultHistoryRows and MaxHistoryRows bound GET /history's rows.
	DefaultHistoryRows = 10_000
	MaxHistoryRows     = 50_000
	// DefaultEventRows and MaxEventRows bound the rows of /history/events
	// and /history/alarms.
	DefaultEventRows = 100
	MaxEventRows     = history.MaxEventLimit
	// MaxExports is how many exports may run at once.
	MaxExports = 2
	// historyTimeout bounds a history query; exportTimeout a whole export.
	historyTimeout = 30 * time.Second
	exportTimeout  = time.Hour
	// openTimeout bounds one attempt to open the store; openRetry is the
	// least time between attempts after a failure.
	openTimeout = 5 * time.Second
	openRetry   = 2 * time.Second
)

const notConfigured = "history needs netsrv's MySQL store, which is not configured ([history] mysql_dsn in modsrv.toml)"

// historyStore opens the read-only history store on first use, and again
// after a failure (at most every openRetry), so modsrv starts and serves
// without MySQL and recovers when it comes back.
type historyStore struct {
	dsn  string
	opts history.Options
	log  *slog.Logger

	mu      sync.Mutex
	store   *history.Store
	lastTry time.Time
	lastErr error

	exports chan struct{} // one token per running export
}

func newHistoryStore(dsn, site string, log *slog.Logger) *historyStore {
	if dsn == "" {
		return nil
	}
	log = log.With("component", "history", "dsn", history.RedactDSN(dsn), "site", site)
	return &historyStore{
		dsn:     dsn,
		opts:    history.Options{Site: site, ReadOnly: true, MaxOpenConns: MaxExports + 2, Logger: log},
		log:     log,
		exports: make(chan struct{}, MaxExports),
	}
}

// get returns the open store or a 503 saying why there is none.
func (h *historyStore) get(ctx context.Context) (*history.Store, error) {
	if h == nil {
		return nil, Errorf(http.StatusServiceUnavailable, notConfigured)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.store != nil {
		return h.store, nil
	}
	if h.lastErr != nil && time.Since(h.lastTry) < openRetry {
		return nil, h.unavailable(h.lastErr)
	}
	h.lastTry = time.Now()
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	s, err := history.Open(octx, h.dsn, h.opts)
	if err != nil {
		if h.lastErr == nil || h.lastErr.Error() != err.Error() {
			h.log.Warn("history store unavailable", "err", err)
		}
		h.lastErr = err
		return nil, h.unavailable(err)
	}
	if h.lastErr != nil {
		h.log.Info("history store available again")
	} else {
		h.log.Info("history store open (read-only)")
	}
	h.lastErr = nil
	h.store = s
	return s, nil
}

// unavailable is the 503 of a store that cannot be used because of err.
func (h *historyStore) unavailable(err error) *Error {
	if errors.Is(err, history.ErrNoSchema) {
		return Errorf(http.StatusServiceUnavailable, "history store unavailable: the database has no history tables yet (netsrv creates them when it starts)")
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "history: ")
	return Errorf(http.StatusServiceUnavailable, "history store unavailable: %s", clipMsg(msg))
}

// fail turns an error of a history read into the API's error: 503 when the
// database could not be reached (or its tables are gone), else 500 (logged
// by the error handler).
func (h *historyStore) fail(err error) error {
	var me *mysql.MySQLError
	if history.IsUnavailable(err) || (errors.As(err, &me) && (me.Number == 1146 || me.Number == 1045 || me.Number == 1044 || me.Number == 1142)) {
		h.log.Warn("history read failed", "err", err)
		return h.unavailable(err)
	}
	return err
}

// Close closes the store if it is open.
func (h *historyStore) Close() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.store == nil {
		return nil
	}
	err := h.store.Close()
	h.store = nil
	return err
}

func clipMsg(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// idQuery reads a query parameter that is an id (model, point, channel);
// required ones must be present.
func idQuery(c *fiber.Ctx, name, what string, required bool) (string, error) {
	v := c.Query(name)
	if v == "" {
		if required {
			return "", Errorf(http.StatusBadRequest, "%s is required (%s)", name, what)
		}
		return "", nil
	}
	if !keys.ValidID(v) {
		return "", Errorf(http.StatusBadRequest, "invalid %s %q: %s", name, clip(v), idRule)
	}
	return strings.Clone(v), nil
}

// timeRange reads from and to (Unix ms): to defaults to now, from to
// to - span; from < to and to - from <= MaxHistorySpan.
func timeRange(c *fiber.Ctx, now time.Time, span time.Duration) (from, to int64, err error) {
	ms := func(name string, def int64) (int64, error) {
		v := c.Query(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<53 {
			return 0, Errorf(http.StatusBadRequest, "%s %q must be a time in Unix milliseconds", name, clip(v))
		}
		return n, nil
	}
	if to, err = ms("to", now.UnixMilli()); err != nil {
		return 0, 0, err
	}
	if from, err = ms("from", max(0, to-span.Milliseconds())); err != nil {
		return 0, 0, err
	}
	if from >= to {
		return 0, 0, Errorf(http.StatusBadRequest, "from (%d) must be before to (%d)", from, to)
	}
	if to-from > MaxHistorySpan.Milliseconds() {
		return 0, 0, Errorf(http.StatusBadRequest, "from..to spans more than %d days", int(MaxHistorySpan/(24*time.Hour)))
	}
	return from, to, nil
}

// stepQuery reads step: empty for raw samples, else a Go duration >= 1s
// and at most the range.
func stepQuery(c *fiber.Ctx) (time.Duration, error) {
	v := c.Query("step")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < MinHistoryStep || d > MaxHistorySpan {
		return 0, Errorf(http.StatusBadRequest, "step %q must be a duration from 1s to %dh such as 30s, 5m or 1h (or empty for raw samples)", clip(v), int(MaxHistorySpan/time.Hour))
	}
	return d, nil
}

// historyRow is one sample or bucket of GET /history.
type historyRow struct {
	TS    int64    `json:"ts"`
	Value *string  `json:"value,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Avg   *float64 `json:"avg,omitempty"`
	Max   *float64 `json:"max,omitempty"`
	Count int64    `json:"count"`
}

func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func (s *server) history(c *fiber.Ctx) error {
	if s.hist == nil {
		return Errorf(http.StatusServiceUnavailable, notConfigured)
	}
	model, err := idQuery(c, "model", "model id", true)
	if err != nil {
		return err
	}
	point, err := idQuery(c, "point", "point name within the model", true)
	if err != nil {
		return err
	}
	from, to, err := timeRange(c, time.Now(), DefaultHistorySpan)
	if err != nil {
		return err
	}
	step, err := stepQuery(c)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", DefaultHistoryRows, 1, MaxHistoryRows)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), historyTimeout)
	defer cancel()
	st, err := s.hist.get(ctx)
	if err != nil {
		return err
	}
	rows, err := st.History(ctx, history.Query{Model: model, Point: point, From: from, To: to, Step: step, Limit: limit + 1})
	if err != nil {
		return s.hist.fail(err)
	}
	truncated := len(rows) > limit
	if truncated {
		rows = rows[:limit]
	}
	out := make([]historyRow, len(rows))
	for i, r := range rows {
		o := historyRow{TS: r.TS, Count: r.Count}
		if step == 0 {
			v := r.Value
			o.Value = &v
			o.Count = 1
		} else {
			o.Min, o.Avg, o.Max = finite(r.Min), finite(r.Avg), finite(r.Max)
		}
		out[i] = o
	}
	return c.JSON(fiber.Map{"model": model, "point": point, "from": from, "to": to, "step_ms": step.Milliseconds(),
		"site": st.Site(), "rows": out, "truncated": truncated})
}

// connEvent is one row of GET /history/events.
type connEvent struct {
	ID           string `json:"id"`
	Event        string `json:"event"`
	Channel      string `json:"channel"`
	Listener     string `json:"listener"`
	Registration string `json:"registration"`
	Remote       string `json:"remote"`
	Reason       string `json:"reason"`
	TS           int64  `json:"ts"`
}

func (s *server) historyEvents(c *fiber.Ctx) error {
	if s.hist == nil {
		return Errorf(http.StatusServiceUnavailable, notConfigured)
	}
	channel, err := idQuery(c, "channel", "channel id", false)
	if err != nil {
		return err
	}
	from, to, err := timeRange(c, time.Now(), MaxHistorySpan)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", DefaultEventRows, 1, MaxEventRows)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), historyTimeout)
	defer cancel()
	st, err := s.hist.get(ctx)
	if err != nil {
		return err
	}
	evs, err := st.ConnectionHistory(ctx, channel, from, to, limit)
	if err != nil {
		return s.hist.fail(err)
	}
	out := make([]connEvent, len(evs))
	for i, e := range evs {
		out[i] = connEvent{ID: e.EventID, Event: e.Event, Channel: e.Channel, Listener: e.Listener,
			Registration: e.Registration, Remote: e.Remote, Reason: e.Reason, TS: e.TS}
	}
	return c.JSON(fiber.Map{"events": out, "more": len(out) == limit})
}

// alarmRecord is one row of GET /history/alarms.
type alarmRecord struct {
	Model          string `json:"model"`
	Point          string `json:"point"`
	Kind           string `json:"kind"`
	Level          string `json:"level"`
	Value          string `json:"value"`
	Limit          string `json:"limit"`
	RaisedTS       int64  `json:"raised_ts"`
	ClearedTS      int64  `json:"cleared_ts"`
	AcknowledgedTS int64  `json:"acknowledged_ts"`
	AcknowledgedBy string `json:"acknowledged_by"`
}

func (s *server) historyAlarms(c *fiber.Ctx) error {
	if s.hist == nil {
		return Errorf(http.StatusServiceUnavailable, notConfigured)
	}
	from, to, err := timeRange(c, time.Now(), MaxHistorySpan)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", DefaultEventRows, 1, MaxEventRows)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), historyTimeout)
	defer cancel()
	st, err := s.hist.get(ctx)
	if err != nil {
		return err
	}
	recs, err := st.AlarmHistory(ctx, from, to, limit)
	if err != nil {
		return s.hist.fail(err)
	}
	out := make([]alarmRecord, len(recs))
	for i, a := range recs {
		out[i] = alarmRecord(a)
	}
	return c.JSON(fiber.Map{"alarms": out, "more": len(out) == limit})
}
