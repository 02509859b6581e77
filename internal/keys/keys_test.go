package keys

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// MarkdownTable renders Table as the README shows it.
func markdownTable() string {
	var b strings.Builder
	b.WriteString("| key or channel | type | written by | holds |\n|---|---|---|---|\n")
	for _, e := range Table() {
		b.WriteString("| `" + e.Pattern + "` | " + e.Type + " | " + e.Writer + " | " + e.Meaning + " |\n")
	}
	return b.String()
}

// TestReadmeKeyTable keeps the README's key table identical to Table.
func TestReadmeKeyTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := markdownTable()
	if !strings.Contains(string(readme), want) {
		t.Fatalf("README.md's key table differs from internal/keys; it should read:\n\n%s", want)
	}
}

func TestSplitRef(t *testing.T) {
	cases := []struct {
		in, owner, point string
		ok               bool
	}{
		{"1001:10001", "1001", "10001", true},
		{"power_meter:voltage", "power_meter", "voltage", true},
		{"a:b:c", "a", "b:c", true},
		{":x", "", "", false},
		{"x:", "", "", false},
		{"x", "", "", false},
	}
	for _, c := range cases {
		o, p, ok := SplitRef(c.in)
		if o != c.owner || p != c.point || ok != c.ok {
			t.Errorf("SplitRef(%q) = %q %q %v", c.in, o, p, ok)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, s := range []string{"1001", "power_meter", "DTU-7.a"} {
		if !ValidID(s) {
			t.Errorf("ValidID(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a:b", "a/b", "/", "a/", "a b", "a*", "x\n", strings.Repeat("a", 129)} {
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}

// TestReserved checks the reserved names derived from the key table: every
// fixed key's first part after the prefix of a per-id key family.
func TestReserved(t *testing.T) {
	want := []string{"channels", "devices", "events", "inflight", "pending", "reload", "restore", "results", "sent", "seq", "stats", "templates"}
	if got := Reserved(); !slices.Equal(got, want) {
		t.Errorf("Reserved() = %q, want %q", got, want)
	}
	for _, r := range Reserved() {
		if ValidID(r) {
			t.Errorf("ValidID(%q) = true for a reserved name", r)
		}
		if !ValidID(strings.ToUpper(r)) || !ValidID(r+"_1") {
			t.Errorf("ValidID refuses %q or %q, which are not reserved", strings.ToUpper(r), r+"_1")
		}
	}
	Reserved()[0] = "x" // a copy
	if Reserved()[0] != want[0] {
		t.Error("Reserved returns its own slice")
	}
}

// TestNoIDMakesAFixedKey checks, for every key built from an id, that no
// valid id builds a fixed key of the table.
func TestNoIDMakesAFixedKey(t *testing.T) {
	families := map[string]func(string) string{
		"ChannelValues": ChannelValues, "ChannelTimestamps": ChannelTimestamps, "ChannelStatus": ChannelStatus,
		"ChannelQuality": ChannelQuality, "ChannelFrames": ChannelFrames, "ChannelData": ChannelData,
		"ModelValues": ModelValues, "ModelTimestamps": ModelTimestamps, "ModelQuality": ModelQuality,
		"ModelUpdates": ModelUpdates, "Command": Command, "CommandQueue": CommandQueue,
	}
	for name, f := range families {
		prefix, suffix, _ := strings.Cut(f("\x00"), "\x00")
		for _, e := range Table() {
			k := e.Pattern
			if strings.Contains(k, "{") || !strings.HasPrefix(k, prefix) || !strings.HasSuffix(k, suffix) ||
				len(k) < len(prefix)+len(suffix) {
				continue
			}
			if id := k[len(prefix) : len(k)-len(suffix)]; ValidID(id) {
				t.Errorf("%s(%q) = %s, a fixed key", name, id, k)
			}
		}
	}
}
