package keys

import (
	"os"
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
	for _, s := range []string{"", "a:b", "a b", "a*", "x\n", strings.Repeat("a", 129)} {
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}
