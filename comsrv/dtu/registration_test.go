package dtu

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/comsrv/config"
)

func regCfg(mode string, length int, term, enc string) *config.Registration {
	return &config.Registration{
		Mode: mode, Length: length, TerminatorBytes: []byte(term), MaxLength: 64, Encoding: enc,
		Regexp: regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`),
	}
}

func TestParseRegistration(t *testing.T) {
	cases := []struct {
		name    string
		cfg     *config.Registration
		in      string
		id      string
		used    int
		wantErr string // "" ok, "more" need more, else any error
	}{
		{"terminator", regCfg("terminator", 0, "\n", "text"), "DTU1001\n", "DTU1001", 8, ""},
		{"crlf", regCfg("terminator", 0, "\n", "text"), "DTU1001\r\nrest", "DTU1001", 9, ""},
		{"followed by data", regCfg("terminator", 0, "\n", "text"), "DTU7\nwww.usr.cn", "DTU7", 5, ""},
		{"split", regCfg("terminator", 0, "\n", "text"), "DTU10", "", 0, "more"},
		{"fixed", regCfg("fixed", 6, "", "text"), "ABC123www", "ABC123", 6, ""},
		{"fixed short", regCfg("fixed", 6, "", "text"), "ABC", "", 0, "more"},
		{"hex", regCfg("fixed", 4, "", "hex"), "\x00\x01\xab\xcd", "0001ABCD", 4, ""},
		{"decimal", regCfg("fixed", 4, "", "decimal"), "\x00\x00\x03\xe9", "1001", 4, ""},
		{"pattern refused", regCfg("terminator", 0, "\n", "text"), "bad id!\n", "", 0, "err"},
		{"binary refused", regCfg("terminator", 0, "\n", "text"), "\x00\xff\n", "", 0, "err"},
		{"empty", regCfg("terminator", 0, "\n", "text"), "\n", "", 0, "err"},
		{"too long", regCfg("terminator", 0, "\n", "text"), string(make([]byte, 100)), "", 0, "err"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, used, err := parseRegistration([]byte(tc.in), tc.cfg)
			switch tc.wantErr {
			case "":
				if err != nil || id != tc.id || used != tc.used {
					t.Fatalf("got %q %d %v, want %q %d", id, used, err, tc.id, tc.used)
				}
			case "more":
				if !errors.Is(err, errNeedMore) {
					t.Fatalf("got %q %v, want need-more", id, err)
				}
			default:
				if err == nil || errors.Is(err, errNeedMore) {
					t.Fatalf("got %q %v, want a refusal", id, err)
				}
			}
		})
	}
}

// FuzzRegistration: arbitrary bytes never panic; an accepted id matches the
// pattern and never uses more bytes than given.
func FuzzRegistration(f *testing.F) {
	f.Add([]byte("DTU1001\n"), uint8(0))
	f.Add([]byte("\x00\x01\x02\x03"), uint8(1))
	f.Add([]byte("A\r\n"), uint8(2))
	cfgs := []*config.Registration{
		regCfg("terminator", 0, "\n", "text"),
		regCfg("fixed", 4, "", "hex"),
		regCfg("fixed", 8, "", "decimal"),
		regCfg("terminator", 0, "\r\n", "text"),
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		c := cfgs[int(which)%len(cfgs)]
		id, used, err := parseRegistration(data, c)
		if err != nil {
			return
		}
		if used > len(data) || used <= 0 {
			t.Fatalf("used %d of %d", used, len(data))
		}
		if !c.Regexp.MatchString(id) {
			t.Fatalf("accepted %q", id)
		}
		// Cutting a secret off and masking secrets keep every byte bounded.
		pos := config.SecretSuffix
		if which%2 == 0 {
			pos = config.SecretPrefix
		}
		if rest, sec, ok := cutSecret(id, 4, pos == config.SecretPrefix); ok && config.WithSecret(rest, sec, pos) != id {
			t.Fatalf("cut %q into %q and %q", id, rest, sec)
		}
		x := &secretIndex{set: map[string]bool{"0000": true, "AB": true}, lens: []int{4, 2}}
		if m := x.mask(id); len(m) != len(id) || strings.Contains(m, "0000") || strings.Contains(m, "AB") {
			t.Fatalf("mask(%q) = %q", id, m)
		}
	})
}
