package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// reader is the read side's state; guarded by Spool.rmu.
type reader struct {
	seq uint64
	off int64
	rec int64
	f   *os.File
	br  *bufio.Reader
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

func (r *reader) moveTo(seq uint64) {
	r.close()
	r.seq, r.off, r.rec = seq, segHeaderSize, 0
}

// Next returns up to max records, oldest first, and the position after them,
// to be passed to Commit once they are uploaded. Only durable records are
// returned. It does not block: with nothing to read it returns no records and
// the current read position.
//
// Next continues after the records it returned before, whether or not they
// were committed; after a restart reading starts again at the committed
// position, so uncommitted records are delivered again (at least once).
func (s *Spool) Next(ctx context.Context, max int) ([]Record, Pos, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	r := &s.rd
	var out []Record
	for len(out) < max {
		if err := ctx.Err(); err != nil {
			return nil, Pos{}, fmt.Errorf("spool: next: %w", err)
		}
		lim, final, ok, err := s.readLimit()
		if err != nil {
			return nil, Pos{}, err
		}
		if !ok {
			break
		}
		if r.f == nil {
			if err := s.openReader(); err != nil {
				return nil, Pos{}, err
			}
		}
		for len(out) < max && r.off < lim {
			rec, err := r.readRecord(lim)
			if err == nil {
				out = append(out, rec)
				continue
			}
			if !errors.Is(err, ErrCorrupt) || !final {
				return nil, Pos{}, err
			}
			// Damage that appeared after Open in a finished segment: skip
			// its rest, as recovery would have done.
			s.log.Error("spool: damaged record while reading, skipping rest of segment",
				"segment", r.seq, "offset", r.off, "err", err)
			r.moveTo(r.seq + 1)
			break
		}
	}
	// Normalize: at the end of a finished segment, point at the next one, so
	// that committing this position lets the finished segment be removed.
	if _, _, _, err := s.readLimit(); err != nil {
		return nil, Pos{}, err
	}
	return out, Pos{Seg: r.seq, Off: r.off, rec: r.rec}, nil
}

// readLimit places the reader on an existing segment and returns how far it
// may read there: the whole segment if it is finished and synced (final), or
// the durable offset of the segment being written.
func (s *Spool) readLimit() (lim int64, final, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, false, fmt.Errorf("spool: next: %w", ErrClosed)
	}
	r := &s.rd
	for {
		i := 0
		for i < len(s.segs) && s.segs[i].seq < r.seq {
			i++
		}
		if i == len(s.segs) {
			return 0, false, false, nil
		}
		sg := s.segs[i]
		if sg.seq != r.seq {
			r.moveTo(sg.seq) // dropped by the cap, or skipped
		}
		switch {
		case sg.seq < s.durable.Seg:
			lim, final = sg.size, true
		case sg.seq == s.durable.Seg:
			lim = s.durable.Off
		default:
			lim = segHeaderSize
		}
		if r.off >= lim && final && i+1 < len(s.segs) {
			r.moveTo(s.segs[i+1].seq)
			continue
		}
		return lim, final, r.off < lim, nil
	}
}

func (s *Spool) openReader() error {
	r := &s.rd
	path := s.segPath(r.seq)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: open segment %s for reading: %w", path, err)
	}
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("spool: seek segment %s: %w", path, err)
	}
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, ioBufSize)
	} else {
		r.br.Reset(f)
	}
	r.f = f
	return nil
}

// readRecord reads and checks the record at r.off, which ends before lim.
func (r *reader) readRecord(lim int64) (Record, error) {
	var h [recHeaderSize]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return Record{}, fmt.Errorf("spool: read segment %d at %d: %w", r.seq, r.off, err)
	}
	want := binary.LittleEndian.Uint32(h[0:4])
	length := int64(binary.LittleEndian.Uint32(h[4:8]))
	ts := int64(binary.LittleEndian.Uint64(h[8:16]))
	if length > maxRecordLimit || r.off+recHeaderSize+length > lim {
		return Record{}, fmt.Errorf("spool: segment %d at %d: record length %d: %w", r.seq, r.off, length, ErrCorrupt)
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(r.br, data); err != nil {
		return Record{}, fmt.Errorf("spool: read segment %d at %d: %w", r.seq, r.off, err)
	}
	crc := crc32.Update(0, castagnoli, h[4:16])
	if crc32.Update(crc, castagnoli, data) != want {
		return Record{}, fmt.Errorf("spool: segment %d at %d: checksum mismatch: %w", r.seq, r.off, ErrCorrupt)
	}
	r.off += recHeaderSize + length
	r.rec++
	return Record{TS: ts, Data: data}, nil
}

// Commit records durably that everything before p (a position returned by
// Next) is uploaded: the cursor file is replaced atomically, and segments
// wholly before p are removed. A p not after the current cursor is ignored.
func (s *Spool) Commit(p Pos) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool: commit %v: %w", p, ErrClosed)
	}
	if !s.cursor.Less(p) {
		s.mu.Unlock()
		return nil
	}
	if s.durable.Less(p) {
		s.mu.Unlock()
		return fmt.Errorf("spool: commit %v: beyond the durable position %v", p, s.durable)
	}
	s.mu.Unlock()

	if err := writeCursor(s.dir, p); err != nil {
		return err
	}

	s.mu.Lock()
	if !s.cursor.Less(p) { // the cap moved the cursor past p meanwhile
		s.mu.Unlock()
		return nil
	}
	s.cursor = p
	var remove []string
	for len(s.segs) > 1 && s.segs[0].seq < p.Seg {
		sg := s.segs[0]
		remove = append(remove, sg.path)
		s.bytes -= sg.fileSize
		s.segs = s.segs[1:]
	}
	s.refreshOldestLocked()
	s.mu.Unlock()

	if len(remove) == 0 {
		return nil
	}
	for _, path := range remove {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove consumed segment %s: %w", path, err)
		}
	}
	return syncDir(s.dir)
}

func (s *Spool) segPath(seq uint64) string { return filepath.Join(s.dir, segName(seq)) }

// refreshOldestLocked sets oldestTS to the ts of the first record after the
// cursor, reading one record header if it is in the middle of a segment.
func (s *Spool) refreshOldestLocked() {
	s.oldestTS = 0
	for i, sg := range s.segs {
		start, rec := int64(segHeaderSize), int64(0)
		switch {
		case sg.seq < s.cursor.Seg:
			continue
		case sg.seq == s.cursor.Seg:
			start, rec = s.cursor.Off, s.cursor.rec
		}
		if rec >= sg.records {
			continue
		}
		if rec == 0 {
			s.oldestTS = sg.firstTS
			return
		}
		var h [recHeaderSize]byte
		if i == len(s.segs)-1 {
			// The header may still be in the write buffer.
			if start+recHeaderSize > sg.size-int64(s.w.Buffered()) {
				if err := s.w.Flush(); err != nil {
					return
				}
			}
			if _, err := s.f.ReadAt(h[:], start); err != nil {
				return
			}
		} else {
			f, err := os.Open(sg.path)
			if err != nil {
				return
			}
			_, err = f.ReadAt(h[:], start)
			f.Close()
			if err != nil {
				return
			}
		}
		s.oldestTS = int64(binary.LittleEndian.Uint64(h[8:16]))
		return
	}
}
