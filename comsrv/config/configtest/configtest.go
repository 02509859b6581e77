// Package configtest writes comsrv configurations for tests: a comsrv.toml
// with its templates/ and channels/ files in a temporary directory, loaded
// as comsrv loads them.
package configtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/voltedge/voltedge/comsrv/config"
)

// Write writes files (path relative to the directory → content) into a new
// temporary directory and returns the directory.
func Write(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	WriteIn(tb, dir, files)
	return dir
}

// WriteIn writes files into dir, replacing files of the same name.
func WriteIn(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// Load loads dir/comsrv.toml and fails the test on an error.
func Load(tb testing.TB, dir string) *config.Config {
	tb.Helper()
	cfg, err := config.Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}
