// Package spool is netsrv's local on-disk store-and-forward buffer.
//
// While MySQL is unreachable, netsrv appends what it reads from Redis to the
// spool and acknowledges the Redis entries only once the spool reports them
// durable. When MySQL is back, a reader uploads the spool oldest first and
// commits its progress, so a restart resumes where it stopped.
//
// Records go to append-only segment files, each record protected by a
// CRC-32C. Appends are made durable by a group commit: one fsync at most every
// Options.SyncEvery. The total size is capped by Options.MaxBytes; beyond it
// the oldest segment is dropped and reported through Options.OnDrop.
//
// Concurrency: one writer goroutine (Append, AppendDurable, WaitDurable) and
// one reader goroutine (Next, Commit) may use a Spool at the same time; Stats
// and Sync may be called from any goroutine. Internally a mutex guards the
// index, so even more callers are safe, but the read order is only meaningful
// for a single reader.
//
// Memory does not depend on the spool's size: segments are scanned and read
// through 64 KiB buffers, and only records handed out by Next are allocated.
package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults for the zero fields of Options.
const (
	// DefaultSegmentSize is the default Options.SegmentSize: 16 MiB.
	DefaultSegmentSize = 16 << 20
	// DefaultMaxBytes is the default Options.MaxBytes: 1 GiB.
	DefaultMaxBytes = 1 << 30
	// DefaultSyncEvery is the default Options.SyncEvery: 500 ms.
	DefaultSyncEvery = 500 * time.Millisecond
	// DefaultMaxRecord is the default Options.MaxRecord: 1 MiB.
	DefaultMaxRecord = 1 << 20
)

// ErrTooLarge is returned (wrapped) by Append for a record over Options.MaxRecord.
var ErrTooLarge = errors.New("spool: record too large")

// ErrClosed is returned (wrapped) by calls on a closed Spool.
var ErrClosed = errors.New("spool: closed")

// ErrCorrupt is returned (wrapped) when a record that passed recovery no
// longer reads back correctly from the segment being written.
var ErrCorrupt = errors.New("spool: corrupt record")

// Options configures a Spool. The zero value gives the defaults.
type Options struct {
	// SegmentSize is the size at which a new segment file is started
	// (default 16 MiB). It must hold at least one record of MaxRecord bytes.
	SegmentSize int64
	// MaxBytes caps the total size of the segment files (default 1 GiB).
	// It must be at least twice SegmentSize.
	MaxBytes int64
	// SyncEvery is the group commit interval: appended records are fsynced at
	// most this often (default 500 ms).
	SyncEvery time.Duration
	// MaxRecord is the largest Record.Data accepted by Append (default 1 MiB).
	MaxRecord int
	// OnDrop, if set, is called for every segment dropped because of
	// MaxBytes. It runs on the appending goroutine after the spool's lock is
	// released, so it may call Stats.
	OnDrop func(DropInfo)
	// Logger receives recovery reports and drops (default slog.Default()).
	Logger *slog.Logger
	// Now returns the current time, for Stats.OldestAge (default time.Now).
	Now func() time.Time
}

// Record is one spooled entry.
type Record struct {
	// TS is the caller's timestamp, by convention Unix milliseconds; 0 means
	// none. It is stored in the record header and used for Stats.OldestAge.
	TS int64
	// Data is the payload, at most Options.MaxRecord bytes.
	Data []byte
}

// Pos is a position in the spool: the offset just after a record in a
// segment. Positions are returned by Append and Next and are ordered by
// (Seg, Off).
type Pos struct {
	// Seg is the segment sequence number.
	Seg uint64
	// Off is the byte offset in the segment file.
	Off int64
	rec int64 // number of records before Off in the segment
}

// Less reports whether p is before q.
func (p Pos) Less(q Pos) bool {
	return p.Seg < q.Seg || (p.Seg == q.Seg && p.Off < q.Off)
}

// String formats the position as segment:offset.
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Seg, p.Off) }

// DropInfo describes a segment dropped because the spool reached MaxBytes.
type DropInfo struct {
	// Segment is the path of the removed file.
	Segment string
	// Records is the number of records in it not yet committed, i.e. lost.
	Records int64
	// Bytes is the file size released.
	Bytes int64
	// OldestTS is the ts of the segment's first record (0 if none).
	OldestTS int64
}

// SegmentDamage describes one damaged segment found by Open.
type SegmentDamage struct {
	// Segment is the file path.
	Segment string
	// Offset is where the damage starts.
	Offset int64
	// LostBytes is the number of bytes that are no longer read.
	LostBytes int64
	// Reason says what was wrong.
	Reason string
	// Action is "truncated", "skipped rest" or "removed".
	Action string
}

// Recovery reports what Open found.
type Recovery struct {
	// Segments and Records are the segment files and valid records kept.
	Segments int
	Records  int64
	// Pending is the number of records after the committed cursor.
	Pending int64
	// Damaged lists every damaged segment.
	Damaged []SegmentDamage
	// LostBytes sums Damaged[i].LostBytes.
	LostBytes int64
	// RemovedConsumed counts fully committed segments removed at Open.
	RemovedConsumed int
	// CursorReset is set when the cursor file was unreadable and reading
	// restarts at the oldest segment.
	CursorReset bool
}

// Stats is a snapshot of the spool's state.
type Stats struct {
	// Segments is the number of segment files, including the one being written.
	Segments int
	// Bytes is the total size of the segment files.
	Bytes int64
	// Pending is the number of records appended and not yet committed.
	Pending int64
	// OldestTS is the ts of the oldest pending record (0 if none or unknown).
	OldestTS int64
	// OldestAge is Now minus OldestTS read as Unix milliseconds (0 if OldestTS is 0).
	OldestAge time.Duration
	// Appended counts records appended since Open.
	Appended int64
	// Durable is the position up to which appends are fsynced.
	Durable Pos
	// Committed is the reader's committed cursor.
	Committed Pos
	// DroppedSegments, DroppedRecords and DroppedBytes count what MaxBytes
	// dropped since Open.
	DroppedSegments int64
	DroppedRecords  int64
	DroppedBytes    int64
	// Syncs counts group-commit fsync rounds since Open.
	Syncs int64
}

// Spool is an on-disk FIFO of records. See the package documentation for the
// concurrency rules.
type Spool struct {
	dir string
	opt Options
	log *slog.Logger

	syncMu sync.Mutex // serializes sync rounds; taken before mu

	mu          sync.Mutex
	segs        []*segment // oldest first; the last one is being written
	f           *os.File   // the segment being written
	w           *bufio.Writer
	pendingSync []*os.File // rotated segments not yet fsynced
	durable     Pos
	durableCh   chan struct{} // closed and replaced when durable advances
	cursor      Pos
	bytes       int64
	oldestTS    int64
	err         error // sticky write/sync error
	closed      bool
	st          Stats // counters only
	hdr         [recHeaderSize]byte

	rmu sync.Mutex // reader state
	rd  reader

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// Open opens or creates the spool in dir, recovering from a torn or damaged
// segment as documented in the README: the last segment is truncated at its
// first bad record, an older one is read only up to it. Damage is reported in
// the returned Recovery and logged; Open fails only on real I/O errors.
func Open(dir string, opt Options) (*Spool, Recovery, error) {
	var rec Recovery
	if err := fillOptions(&opt); err != nil {
		return nil, rec, err
	}
	s := &Spool{
		dir:       dir,
		opt:       opt,
		log:       opt.Logger.With("spool", dir),
		durableCh: make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, rec, fmt.Errorf("spool: create dir %s: %w", dir, err)
	}
	if err := os.Remove(filepath.Join(dir, cursorTmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, rec, fmt.Errorf("spool: remove stale cursor: %w", err)
	}
	haveCursor, err := s.loadCursor(&rec)
	if err != nil {
		return nil, rec, err
	}
	if err := s.recover(&rec, haveCursor); err != nil {
		s.closeFiles()
		return nil, rec, err
	}
	s.rd.seq, s.rd.off, s.rd.rec = s.cursor.Seg, s.cursor.Off, s.cursor.rec
	s.refreshOldestLocked()
	rec.Segments = len(s.segs)
	for _, sg := range s.segs {
		rec.Records += sg.records
	}
	rec.Pending = s.pendingLocked()
	for _, d := range rec.Damaged {
		rec.LostBytes += d.LostBytes
		s.log.Warn("spool: damaged segment recovered", "segment", d.Segment, "offset", d.Offset,
			"lost_bytes", d.LostBytes, "reason", d.Reason, "action", d.Action)
	}
	s.log.Info("spool: opened", "segments", rec.Segments, "records", rec.Records,
		"pending", rec.Pending, "bytes", s.bytes, "lost_bytes", rec.LostBytes)
	go s.syncLoop()
	return s, rec, nil
}

func fillOptions(o *Options) error {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	if o.MaxRecord == 0 {
		o.MaxRecord = DefaultMaxRecord
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.MaxRecord < 0 || o.MaxRecord > maxRecordLimit:
		return fmt.Errorf("spool: MaxRecord %d out of range (0, %d]", o.MaxRecord, maxRecordLimit)
	case o.SegmentSize < segHeaderSize+recHeaderSize+int64(o.MaxRecord):
		return fmt.Errorf("spool: SegmentSize %d cannot hold a record of MaxRecord %d bytes", o.SegmentSize, o.MaxRecord)
	case o.MaxBytes < 2*o.SegmentSize:
		return fmt.Errorf("spool: MaxBytes %d is less than twice SegmentSize %d", o.MaxBytes, o.SegmentSize)
	}
	return nil
}

func (s *Spool) loadCursor(rec *Recovery) (bool, error) {
	path := filepath.Join(s.dir, cursorName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spool: read cursor %s: %w", path, err)
	}
	p, err := decodeCursor(b)
	if err != nil {
		rec.CursorReset = true
		s.log.Warn("spool: unreadable cursor, reading from the oldest segment", "path", path, "err", err)
		return false, nil
	}
	s.cursor = p
	return true, nil
}

// recover scans the segment files, repairs them and opens the last one for
// appending.
func (s *Spool) recover(rec *Recovery, haveCursor bool) error {
	seqs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	removed := false
	for i, seq := range seqs {
		path := filepath.Join(s.dir, segName(seq))
		last := i == len(seqs)-1
		if haveCursor && seq < s.cursor.Seg {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("spool: remove consumed segment %s: %w", path, err)
			}
			rec.RemovedConsumed++
			removed = true
			continue
		}
		sg, res, err := scanSegment(path, seq)
		if err != nil {
			return err
		}
		if res.badHeader {
			rec.Damaged = append(rec.Damaged, SegmentDamage{Segment: path, LostBytes: sg.fileSize, Reason: res.reason, Action: "removed"})
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("spool: remove damaged segment %s: %w", path, err)
			}
			removed = true
			continue
		}
		if res.badAt >= 0 {
			d := SegmentDamage{Segment: path, Offset: res.badAt, LostBytes: sg.fileSize - res.badAt, Reason: res.reason}
			if last {
				if err := truncateFile(path, res.badAt); err != nil {
					return err
				}
				sg.fileSize = res.badAt
				d.Action = "truncated"
			} else {
				d.Action = "skipped rest"
			}
			rec.Damaged = append(rec.Damaged, d)
		}
		s.segs = append(s.segs, sg)
		s.bytes += sg.fileSize
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	if len(s.segs) == 0 {
		next := uint64(1)
		if haveCursor {
			next = s.cursor.Seg + 1
		}
		if err := s.createSegmentLocked(next); err != nil {
			return err
		}
	} else {
		a := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(a.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: open segment %s: %w", a.path, err)
		}
		if _, err := f.Seek(a.size, 0); err != nil {
			f.Close()
			return fmt.Errorf("spool: seek segment %s: %w", a.path, err)
		}
		s.f = f
		s.w = bufio.NewWriterSize(f, ioBufSize)
	}
	s.durable = s.writtenLocked()
	// Clamp the cursor onto what exists.
	if first := s.segs[0]; !haveCursor || s.cursor.Seg < first.seq {
		s.cursor = Pos{Seg: first.seq, Off: segHeaderSize}
	} else if s.cursor.Seg == first.seq && (s.cursor.Off > first.size || s.cursor.rec > first.records) {
		s.cursor = Pos{Seg: first.seq, Off: first.size, rec: first.records}
	}
	return nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: open segment %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("spool: truncate segment %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: sync segment %s: %w", path, err)
	}
	return nil
}

// createSegmentLocked creates segment seq, makes it the one being written and
// fsyncs the directory. The header goes through the write buffer and becomes
// durable with the next sync.
func (s *Spool) createSegmentLocked(seq uint64) error {
	path := filepath.Join(s.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("spool: create segment %s: %w", path, err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, ioBufSize)
	} else {
		s.w.Reset(f)
	}
	var h [segHeaderSize]byte
	encodeSegHeader(h[:], seq)
	s.w.Write(h[:]) // cannot fail: the buffer is empty and larger than h
	s.f = f
	s.segs = append(s.segs, &segment{seq: seq, path: path, size: segHeaderSize, fileSize: segHeaderSize})
	s.bytes += segHeaderSize
	return nil
}

func (s *Spool) active() *segment { return s.segs[len(s.segs)-1] }

func (s *Spool) writtenLocked() Pos {
	a := s.active()
	return Pos{Seg: a.seq, Off: a.size, rec: a.records}
}

// pendingLocked counts the records after the committed cursor.
func (s *Spool) pendingLocked() int64 {
	var n int64
	for _, sg := range s.segs {
		switch {
		case sg.seq > s.cursor.Seg:
			n += sg.records
		case sg.seq == s.cursor.Seg:
			n += max(0, sg.records-s.cursor.rec)
		}
	}
	return n
}

// Append adds records to the spool and returns the position after the last
// one. The records are buffered; they are durable once WaitDurable for the
// returned position returns nil. A record larger than MaxRecord fails the
// whole call before anything is written. If appending would make the spool
// exceed MaxBytes, the oldest segments are dropped first (see OnDrop).
//
// After a write or sync error every later Append fails; Close and reopen the
// spool, which truncates any partial record.
func (s *Spool) Append(recs []Record) (Pos, error) {
	for i := range recs {
		if len(recs[i].Data) > s.opt.MaxRecord {
			return Pos{}, fmt.Errorf("spool: append record of %d bytes (limit %d): %w", len(recs[i].Data), s.opt.MaxRecord, ErrTooLarge)
		}
	}
	var drops []DropInfo
	s.mu.Lock()
	pos, err := s.appendLocked(recs, &drops)
	s.mu.Unlock()
	if s.opt.OnDrop != nil {
		for _, d := range drops {
			s.opt.OnDrop(d)
		}
	}
	return pos, err
}

func (s *Spool) appendLocked(recs []Record, drops *[]DropInfo) (Pos, error) {
	if s.closed {
		return Pos{}, fmt.Errorf("spool: append: %w", ErrClosed)
	}
	if s.err != nil {
		return Pos{}, fmt.Errorf("spool: append after earlier failure: %w", s.err)
	}
	wasEmpty := len(recs) > 0 && s.pendingLocked() == 0
	for i := range recs {
		r := &recs[i]
		n := int64(recHeaderSize + len(r.Data))
		if a := s.active(); a.size+n > s.opt.SegmentSize && a.records > 0 {
			if err := s.rotateLocked(); err != nil {
				s.err = err
				s.wakeLocked()
				return Pos{}, err
			}
		}
		for s.bytes+n > s.opt.MaxBytes && len(s.segs) > 1 {
			d, err := s.dropOldestLocked()
			if err != nil {
				s.err = err
				s.wakeLocked()
				return Pos{}, err
			}
			*drops = append(*drops, d)
		}
		encodeRecHeader(s.hdr[:], r.TS, r.Data)
		a := s.active()
		if _, err := s.w.Write(s.hdr[:]); err != nil {
			s.err = fmt.Errorf("spool: write segment %s: %w", a.path, err)
			s.wakeLocked()
			return Pos{}, s.err
		}
		if _, err := s.w.Write(r.Data); err != nil {
			s.err = fmt.Errorf("spool: write segment %s: %w", a.path, err)
			s.wakeLocked()
			return Pos{}, s.err
		}
		if a.records == 0 {
			a.firstTS = r.TS
		}
		a.records++
		a.size += n
		a.fileSize += n
		s.bytes += n
		s.st.Appended++
	}
	if wasEmpty {
		s.oldestTS = recs[0].TS
	}
	return s.writtenLocked(), nil
}

// rotateLocked flushes the segment being written, hands its file to the next
// sync round and starts the next segment.
func (s *Spool) rotateLocked() error {
	a := s.active()
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool: write segment %s: %w", a.path, err)
	}
	s.pendingSync = append(s.pendingSync, s.f)
	s.f = nil
	return s.createSegmentLocked(a.seq + 1)
}

// dropOldestLocked removes the oldest segment; it is never the one being
// written because the caller keeps at least two segments.
func (s *Spool) dropOldestLocked() (DropInfo, error) {
	sg := s.segs[0]
	lost := sg.records
	if sg.seq == s.cursor.Seg {
		lost = max(0, sg.records-s.cursor.rec)
	} else if sg.seq < s.cursor.Seg {
		lost = 0
	}
	if err := os.Remove(sg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return DropInfo{}, fmt.Errorf("spool: drop segment %s: %w", sg.path, err)
	}
	if err := syncDir(s.dir); err != nil {
		return DropInfo{}, err
	}
	s.segs = s.segs[1:]
	s.bytes -= sg.fileSize
	s.st.DroppedSegments++
	s.st.DroppedRecords += lost
	s.st.DroppedBytes += sg.fileSize
	if s.cursor.Seg <= sg.seq {
		// The cursor fell off the spool: the oldest pending record is now
		// the first one of the next segment.
		s.cursor = Pos{Seg: s.segs[0].seq, Off: segHeaderSize}
		s.refreshOldestLocked()
	}
	d := DropInfo{Segment: sg.path, Records: lost, Bytes: sg.fileSize, OldestTS: sg.firstTS}
	s.log.Error("spool: size cap reached, dropped oldest segment", "segment", sg.path,
		"records", lost, "bytes", sg.fileSize, "oldest_ts", sg.firstTS, "max_bytes", s.opt.MaxBytes)
	return d, nil
}

// wakeLocked wakes every WaitDurable caller.
func (s *Spool) wakeLocked() {
	close(s.durableCh)
	s.durableCh = make(chan struct{})
}

// AppendDurable appends recs and waits until they are durable (the next group
// sync).
func (s *Spool) AppendDurable(ctx context.Context, recs []Record) (Pos, error) {
	p, err := s.Append(recs)
	if err != nil {
		return p, err
	}
	return p, s.WaitDurable(ctx, p)
}

// WaitDurable blocks until everything up to p has been fsynced, ctx is done,
// or the spool failed or closed.
func (s *Spool) WaitDurable(ctx context.Context, p Pos) error {
	for {
		s.mu.Lock()
		switch {
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return fmt.Errorf("spool: wait durable %v: %w", p, err)
		case !s.durable.Less(p):
			s.mu.Unlock()
			return nil
		case s.closed:
			s.mu.Unlock()
			return fmt.Errorf("spool: wait durable %v: %w", p, ErrClosed)
		}
		ch := s.durableCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("spool: wait durable %v: %w", p, ctx.Err())
		}
	}
}

// Sync runs a group sync now: it flushes and fsyncs everything appended so
// far. Normally the background loop does this every SyncEvery.
func (s *Spool) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.syncRound()
}

// syncRound flushes the write buffer under mu and fsyncs outside it, so
// appends continue during the fsync. Callers hold syncMu.
func (s *Spool) syncRound() error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if s.f == nil {
		s.mu.Unlock()
		return nil
	}
	target := s.writtenLocked()
	old := s.pendingSync
	if !s.durable.Less(target) && len(old) == 0 {
		s.mu.Unlock()
		return nil
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("spool: write segment %s: %w", s.active().path, err)
		s.wakeLocked()
		s.mu.Unlock()
		return s.err
	}
	s.pendingSync = nil
	f := s.f
	s.mu.Unlock()

	var err error
	for _, of := range old {
		if e := of.Sync(); e != nil && err == nil {
			err = fmt.Errorf("spool: sync segment %s: %w", of.Name(), e)
		}
		of.Close()
	}
	if err == nil {
		if e := f.Sync(); e != nil {
			err = fmt.Errorf("spool: sync segment %s: %w", f.Name(), e)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// After a failed fsync the page cache state is unknown: stop.
		s.err = err
		s.wakeLocked()
		return err
	}
	s.st.Syncs++
	if s.durable.Less(target) {
		s.durable = target
		s.wakeLocked()
	}
	return nil
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opt.SyncEvery)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.syncMu.Lock()
			err := s.syncRound()
			s.syncMu.Unlock()
			if err != nil && !failed {
				failed = true
				s.log.Error("spool: group sync failed; appends stop", "err", err)
			}
		}
	}
}

// Stats returns a snapshot of the spool's state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Segments = len(s.segs)
	st.Bytes = s.bytes
	st.Pending = s.pendingLocked()
	st.Durable = s.durable
	st.Committed = s.cursor
	if st.Pending > 0 {
		st.OldestTS = s.oldestTS
	}
	if st.OldestTS != 0 {
		st.OldestAge = s.opt.Now().Sub(time.UnixMilli(st.OldestTS))
	}
	return st
}

// Close syncs what was appended and closes the files. Calls after Close fail
// with ErrClosed; Stats still works. Close may be called more than once.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	err := s.Sync()
	s.rmu.Lock()
	s.rd.close()
	s.rmu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.closeFiles()
	s.wakeLocked()
	s.mu.Unlock()
	return err
}

func (s *Spool) closeFiles() {
	for _, f := range s.pendingSync {
		f.Close()
	}
	s.pendingSync = nil
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
