package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// On-disk layout (all integers little endian):
//
//	segment header, 16 bytes: magic "VESP" | version u16 | reserved u16 | sequence u64
//	record, 16-byte header + data: crc u32 | length u32 | ts i64 | data[length]
//
// The record CRC-32C (Castagnoli) covers length, ts and data.
//
//	cursor file, 36 bytes: magic "VESC" | version u16 | reserved u16 |
//	                       segment u64 | offset i64 | record index i64 | crc u32
const (
	segMagic      = "VESP"
	segVersion    = 1
	segHeaderSize = 16
	recHeaderSize = 16

	cursorMagic   = "VESC"
	cursorVersion = 1
	cursorSize    = 36
	cursorName    = "cursor"
	cursorTmpName = "cursor.tmp"

	segSuffix = ".seg"

	// maxRecordLimit bounds the length field accepted when scanning or reading,
	// independent of Options.MaxRecord, so a spool written with a larger limit
	// still reads back, while a corrupt length never causes a huge allocation.
	maxRecordLimit = 64 << 20

	// ioBufSize is the size of every buffered reader and writer.
	ioBufSize = 64 << 10
)

// castagnoli is the CRC-32C table; it is never modified after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segSuffix) }

func parseSegName(name string) (uint64, bool) {
	if len(name) != 16+len(segSuffix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil {
		return 0, false
	}
	return seq, true
}

func encodeSegHeader(b []byte, seq uint64) {
	copy(b[0:4], segMagic)
	binary.LittleEndian.PutUint16(b[4:6], segVersion)
	binary.LittleEndian.PutUint16(b[6:8], 0)
	binary.LittleEndian.PutUint64(b[8:16], seq)
}

func checkSegHeader(b []byte, seq uint64) error {
	switch {
	case string(b[0:4]) != segMagic:
		return errors.New("bad magic")
	case binary.LittleEndian.Uint16(b[4:6]) != segVersion:
		return fmt.Errorf("unsupported version %d", binary.LittleEndian.Uint16(b[4:6]))
	case binary.LittleEndian.Uint64(b[8:16]) != seq:
		return fmt.Errorf("header sequence %d does not match file name", binary.LittleEndian.Uint64(b[8:16]))
	}
	return nil
}

// encodeRecHeader fills the 16-byte record header for data and ts.
func encodeRecHeader(h []byte, ts int64, data []byte) {
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[8:16], uint64(ts))
	crc := crc32.Update(0, castagnoli, h[4:16])
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(h[0:4], crc)
}

// segment is the in-memory index entry of one segment file.
type segment struct {
	seq      uint64
	path     string
	size     int64 // end of the valid records (header included)
	fileSize int64 // bytes on disk, counted against MaxBytes
	records  int64 // valid records in the segment
	firstTS  int64 // ts of the first record
}

// scanResult describes the first damage found in a segment, if any.
type scanResult struct {
	badHeader bool
	badAt     int64 // offset of the first bad record; -1 if none
	reason    string
}

// scanSegment streams through a segment file with a bounded buffer, counting
// the valid records and finding the first damaged one. Only real I/O errors
// are returned as errors.
func scanSegment(path string, seq uint64) (*segment, scanResult, error) {
	res := scanResult{badAt: -1}
	f, err := os.Open(path)
	if err != nil {
		return nil, res, fmt.Errorf("spool: open segment %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, res, fmt.Errorf("spool: stat segment %s: %w", path, err)
	}
	seg := &segment{seq: seq, path: path, fileSize: st.Size()}
	br := bufio.NewReaderSize(f, ioBufSize)
	var hdr [segHeaderSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			res.badHeader, res.reason = true, "truncated segment header"
			return seg, res, nil
		}
		return nil, res, fmt.Errorf("spool: read segment %s: %w", path, err)
	}
	if err := checkSegHeader(hdr[:], seq); err != nil {
		res.badHeader, res.reason = true, err.Error()
		return seg, res, nil
	}
	off := int64(segHeaderSize)
	seg.size = off
	for off < seg.fileSize {
		reason, n, ts, err := scanRecord(br, seg.fileSize-off)
		if err != nil {
			return nil, res, fmt.Errorf("spool: read segment %s at %d: %w", path, off, err)
		}
		if reason != "" {
			res.badAt, res.reason = off, reason
			break
		}
		if seg.records == 0 {
			seg.firstTS = ts
		}
		seg.records++
		off += n
		seg.size = off
	}
	return seg, res, nil
}

// scanRecord checks the record at the reader's position; left is the number
// of bytes left in the file. It returns a non-empty reason for a damaged
// record, else the record's total size and ts.
func scanRecord(br *bufio.Reader, left int64) (reason string, n int64, ts int64, err error) {
	if left < recHeaderSize {
		return "truncated record header", 0, 0, nil
	}
	h, err := br.Peek(recHeaderSize)
	if err != nil {
		return "", 0, 0, err
	}
	want := binary.LittleEndian.Uint32(h[0:4])
	length := int64(binary.LittleEndian.Uint32(h[4:8]))
	ts = int64(binary.LittleEndian.Uint64(h[8:16]))
	if length > maxRecordLimit {
		return fmt.Sprintf("record length %d over limit", length), 0, 0, nil
	}
	if recHeaderSize+length > left {
		return "truncated record", 0, 0, nil
	}
	crc := crc32.Update(0, castagnoli, h[4:16])
	if _, err := br.Discard(recHeaderSize); err != nil {
		return "", 0, 0, err
	}
	for rem := length; rem > 0; {
		chunk := int(min(rem, int64(br.Size())))
		b, err := br.Peek(chunk)
		if err != nil {
			return "", 0, 0, err
		}
		crc = crc32.Update(crc, castagnoli, b)
		if _, err := br.Discard(chunk); err != nil {
			return "", 0, 0, err
		}
		rem -= int64(chunk)
	}
	if crc != want {
		return "checksum mismatch", 0, 0, nil
	}
	return "", recHeaderSize + length, ts, nil
}

// listSegments returns the sequence numbers of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	var seqs []uint64
	for _, e := range ents {
		if seq, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

func encodeCursor(p Pos) []byte {
	b := make([]byte, cursorSize)
	copy(b[0:4], cursorMagic)
	binary.LittleEndian.PutUint16(b[4:6], cursorVersion)
	binary.LittleEndian.PutUint64(b[8:16], p.Seg)
	binary.LittleEndian.PutUint64(b[16:24], uint64(p.Off))
	binary.LittleEndian.PutUint64(b[24:32], uint64(p.rec))
	binary.LittleEndian.PutUint32(b[32:36], crc32.Checksum(b[0:32], castagnoli))
	return b
}

func decodeCursor(b []byte) (Pos, error) {
	if len(b) != cursorSize {
		return Pos{}, fmt.Errorf("cursor file has %d bytes, want %d", len(b), cursorSize)
	}
	if string(b[0:4]) != cursorMagic || binary.LittleEndian.Uint16(b[4:6]) != cursorVersion {
		return Pos{}, errors.New("bad cursor magic or version")
	}
	if crc32.Checksum(b[0:32], castagnoli) != binary.LittleEndian.Uint32(b[32:36]) {
		return Pos{}, errors.New("cursor checksum mismatch")
	}
	p := Pos{
		Seg: binary.LittleEndian.Uint64(b[8:16]),
		Off: int64(binary.LittleEndian.Uint64(b[16:24])),
		rec: int64(binary.LittleEndian.Uint64(b[24:32])),
	}
	if p.Off < segHeaderSize || p.rec < 0 {
		return Pos{}, errors.New("cursor position out of range")
	}
	return p, nil
}

// writeCursor replaces the cursor file atomically: temp file, fsync, rename,
// directory fsync.
func writeCursor(dir string, p Pos) error {
	tmp := filepath.Join(dir, cursorTmpName)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("spool: create cursor %s: %w", tmp, err)
	}
	if _, err := f.Write(encodeCursor(p)); err != nil {
		f.Close()
		return fmt.Errorf("spool: write cursor %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: sync cursor %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("spool: close cursor %s: %w", tmp, err)
	}
	dst := filepath.Join(dir, cursorName)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("spool: rename cursor to %s: %w", dst, err)
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory so that file creations, renames and removals in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync dir %s: %w", dir, err)
	}
	return nil
}
