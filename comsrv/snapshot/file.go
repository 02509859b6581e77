package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxBytes bounds a snapshot file's content: a larger configuration is
// not written (and reported), a larger file is not read.
const MaxBytes = 32 << 20

// magic and formatVersion open a snapshot file's header line:
// "voltedge-config-snapshot 1 sha256:<hex of the body> <body length>".
const (
	magic         = "voltedge-config-snapshot"
	formatVersion = 1
	maxHeader     = 256
)

// ErrCorrupt is wrapped by Read's errors for a file that is not a whole,
// intact snapshot (bad header, wrong length or checksum, bad JSON).
var ErrCorrupt = errors.New("snapshot corrupt")

// ErrTooLarge is wrapped by Write's error for content over MaxBytes.
var ErrTooLarge = errors.New("snapshot too large")

// Snapshot is the content of a snapshot file.
type Snapshot struct {
	// WrittenAt is when the snapshot was taken, Unix ms.
	WrittenAt int64 `json:"written_at"`
	// RunID is the run_id of the Redis it was read from.
	RunID string `json:"run_id"`
	// Keys holds each configuration hash that existed: key → field → value.
	Keys map[string]map[string]string `json:"keys"`
}

// Write stores s at path atomically: a temporary file in the same
// directory (created if missing) is written, synced and renamed over path,
// and the directory is synced, so that a crash or a power cut leaves the
// old file or the new one, never a mix.
func Write(path string, s *Snapshot) error {
	body, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("snapshot %s: encode: %w", path, err)
	}
	if len(body) > MaxBytes {
		return fmt.Errorf("snapshot %s: %w: %d bytes, more than %d", path, ErrTooLarge, len(body), MaxBytes)
	}
	sum := sha256.Sum256(body)
	head := fmt.Sprintf("%s %d sha256:%s %d\n", magic, formatVersion, hex.EncodeToString(sum[:]), len(body))
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(head)
	if err == nil {
		_, err = f.Write(body)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("snapshot %s: write: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself; not every file system syncs directories
		_ = d.Close()
	}
	return nil
}

// Read loads and checks the snapshot at path. A missing file gives an
// error wrapping fs.ErrNotExist; a damaged one an error wrapping ErrCorrupt.
func Read(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+maxHeader+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read: %w", path, err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("snapshot %s: %w: %s", path, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(data) > MaxBytes+maxHeader {
		return nil, corrupt("larger than %d bytes", MaxBytes+maxHeader)
	}
	head, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok || len(head) > maxHeader {
		return nil, corrupt("no header line")
	}
	fields := strings.Fields(string(head))
	if len(fields) != 4 || fields[0] != magic {
		return nil, corrupt("not a configuration snapshot")
	}
	if fields[1] != strconv.Itoa(formatVersion) {
		return nil, corrupt("format %q, want %d", fields[1], formatVersion)
	}
	n, err := strconv.Atoi(fields[3])
	if err != nil || n != len(body) {
		return nil, corrupt("%d bytes of content, the header says %s (cut short?)", len(body), fields[3])
	}
	sum := sha256.Sum256(body)
	if fields[2] != "sha256:"+hex.EncodeToString(sum[:]) {
		return nil, corrupt("checksum mismatch")
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, corrupt("content: %v", err)
	}
	return &s, nil
}
