package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// writeSpool writes records [0,n) with opt, closes the spool and returns the
// segment sequence numbers and the record boundaries of the last segment.
func writeSpool(t testing.TB, dir string, opt Options, n int) []uint64 {
	t.Helper()
	s, _ := mustOpen(t, dir, opt)
	appendRange(t, s, 0, n, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// recordOffsets returns the start offset of every record in a segment file.
func recordOffsets(t testing.TB, b []byte) []int64 {
	t.Helper()
	var offs []int64
	for off := int64(segHeaderSize); off < int64(len(b)); {
		offs = append(offs, off)
		off += recHeaderSize + int64(binary.LittleEndian.Uint32(b[off+4:off+8]))
	}
	return offs
}

func TestTornTailEveryOffset(t *testing.T) {
	opt := smallOpts()
	src := t.TempDir()
	seqs := writeSpool(t, src, opt, 5)
	if len(seqs) != 1 {
		t.Fatalf("%d segments, want 1", len(seqs))
	}
	name := segName(seqs[0])
	full, err := os.ReadFile(filepath.Join(src, name))
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, full)
	lastStart := offs[len(offs)-1]
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	for cut := lastStart; cut < int64(len(full)); cut++ {
		if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, cursorName))
		s, rc, err := Open(dir, opt)
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		wantDamage := cut > lastStart
		if (len(rc.Damaged) == 1) != wantDamage || rc.Records != 4 {
			t.Fatalf("cut %d: recovery %+v", cut, rc)
		}
		if wantDamage && (rc.Damaged[0].Action != "truncated" || rc.Damaged[0].Offset != lastStart || rc.LostBytes != cut-lastStart) {
			t.Fatalf("cut %d: damage %+v", cut, rc.Damaged[0])
		}
		if st, _ := os.Stat(path); st.Size() != lastStart {
			t.Fatalf("cut %d: file is %d bytes, want truncated to %d", cut, st.Size(), lastStart)
		}
		// Appending after the truncation continues a valid file.
		waitDurable(t, s, appendRange(t, s, 4, 5, 1))
		got := readAll(t, s, 100, false)
		if len(got) != 5 {
			t.Fatalf("cut %d: read %d records, want 5", cut, len(got))
		}
		for i, r := range got {
			checkRec(t, r, i)
		}
		s.Close()
	}
}

func TestTornSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	seqs := writeSpool(t, dir, smallOpts(), 200)
	last := filepath.Join(dir, segName(seqs[len(seqs)-1]))
	if err := os.Truncate(last, 7); err != nil {
		t.Fatal(err)
	}
	s, rc := mustOpen(t, dir, smallOpts())
	defer s.Close()
	if len(rc.Damaged) != 1 || rc.Damaged[0].Action != "removed" {
		t.Fatalf("recovery: %+v", rc)
	}
	got := readAll(t, s, 50, true)
	if int64(len(got)) != rc.Records || len(got) == 0 {
		t.Fatalf("read %d, recovered %d", len(got), rc.Records)
	}
	for i, r := range got {
		checkRec(t, r, i)
	}
	// New data goes on after the last intact segment.
	waitDurable(t, s, appendRange(t, s, len(got), len(got)+3, 1))
	if got := readAll(t, s, 50, true); len(got) != 3 {
		t.Fatalf("read %d new records, want 3", len(got))
	}
}

func TestFlippedByteInOlderSegment(t *testing.T) {
	dir := t.TempDir()
	opt := smallOpts()
	seqs := writeSpool(t, dir, opt, 200)
	if len(seqs) < 3 {
		t.Fatalf("%d segments, want >= 3", len(seqs))
	}
	// Count the records per segment, then damage the middle record of the
	// second segment.
	counts := make([]int, len(seqs))
	var offs []int64
	var b []byte
	for i, seq := range seqs {
		data, err := os.ReadFile(filepath.Join(dir, segName(seq)))
		if err != nil {
			t.Fatal(err)
		}
		o := recordOffsets(t, data)
		counts[i] = len(o)
		if i == 1 {
			offs, b = o, data
		}
	}
	k := len(offs) / 2
	b[offs[k]+recHeaderSize+5] ^= 0x40
	if err := os.WriteFile(filepath.Join(dir, segName(seqs[1])), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, rc := mustOpen(t, dir, opt)
	defer s.Close()
	if len(rc.Damaged) != 1 || rc.Damaged[0].Action != "skipped rest" || rc.Damaged[0].Offset != offs[k] {
		t.Fatalf("recovery: %+v", rc)
	}
	got := readAll(t, s, 16, true)
	lost := counts[1] - k
	if len(got) != 200-lost {
		t.Fatalf("read %d records, want %d", len(got), 200-lost)
	}
	for i, r := range got {
		want := i
		if i >= counts[0]+k {
			want = i + lost
		}
		checkRec(t, r, want)
	}
	// The damaged segment is removed once the reader has committed past it.
	if _, err := os.Stat(filepath.Join(dir, segName(seqs[1]))); !os.IsNotExist(err) {
		t.Fatalf("damaged segment still there after commit: %v", err)
	}
}

func TestCorruptCursor(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, smallOpts())
	waitDurable(t, s, appendRange(t, s, 0, 10, 1))
	recs, p, _ := s.Next(context.Background(), 5)
	if len(recs) != 5 {
		t.Fatal("short read")
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorName), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, rc := mustOpen(t, dir, smallOpts())
	defer s.Close()
	if !rc.CursorReset || rc.Pending != 10 {
		t.Fatalf("recovery: %+v", rc)
	}
	if got := readAll(t, s, 100, true); len(got) != 10 {
		t.Fatalf("read %d, want all 10 again", len(got))
	}
}

// validPrefix is an independent reading of a segment file: the records before
// the first damaged one, or nil if the header is bad.
func validPrefix(b []byte, seq uint64) []Record {
	if len(b) < segHeaderSize || string(b[:4]) != segMagic ||
		binary.LittleEndian.Uint16(b[4:6]) != segVersion || binary.LittleEndian.Uint64(b[8:16]) != seq {
		return nil
	}
	var out []Record
	for off := segHeaderSize; len(b)-off >= recHeaderSize; {
		h := b[off : off+recHeaderSize]
		n := int(binary.LittleEndian.Uint32(h[4:8]))
		if n > len(b)-off-recHeaderSize {
			break
		}
		data := b[off+recHeaderSize : off+recHeaderSize+n]
		c := crc32.New(castagnoli)
		c.Write(h[4:16])
		c.Write(data)
		if c.Sum32() != binary.LittleEndian.Uint32(h[0:4]) {
			break
		}
		out = append(out, Record{TS: int64(binary.LittleEndian.Uint64(h[8:16])), Data: data})
		off += recHeaderSize + n
	}
	return out
}

func FuzzRecover(f *testing.F) {
	var seed bytes.Buffer
	var hdr [segHeaderSize]byte
	encodeSegHeader(hdr[:], 1)
	seed.Write(hdr[:])
	f.Add(append([]byte(nil), seed.Bytes()...))
	for i := 0; i < 3; i++ {
		r := rec(i)
		var h [recHeaderSize]byte
		encodeRecHeader(h[:], r.TS, r.Data[:20])
		seed.Write(h[:])
		seed.Write(r.Data[:20])
	}
	f.Add(seed.Bytes())
	f.Add(seed.Bytes()[:seed.Len()-3])
	f.Add([]byte("VESP"))
	f.Add([]byte{})
	opt := smallOpts()
	opt.SyncEvery = 1 << 40
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, rc, err := Open(dir, opt)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		want := validPrefix(b, 1)
		got := readAll(t, s, 7, true)
		if len(got) != len(want) || rc.Records != int64(len(want)) {
			t.Fatalf("read %d records (recovered %d), %d valid", len(got), rc.Records, len(want))
		}
		for i := range got {
			if got[i].TS != want[i].TS || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("record %d differs", i)
			}
		}
	})
}

func TestDamageAfterOpenSkipsRestOfSegment(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, smallOpts())
	defer s.Close()
	waitDurable(t, s, appendRange(t, s, 0, 100, 5))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	seqs, _ := listSegments(dir)
	path := filepath.Join(dir, segName(seqs[0]))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, b)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[offs[3]+20] ^ 1}, offs[3]+20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got := readAll(t, s, 10, true)
	lost := len(offs) - 3
	if len(got) != 100-lost {
		t.Fatalf("read %d, want %d", len(got), 100-lost)
	}
	for i, r := range got {
		want := i
		if i >= 3 {
			want = i + lost
		}
		checkRec(t, r, want)
	}
}
