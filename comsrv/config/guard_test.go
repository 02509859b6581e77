package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGuardKeysInheritAndDefault(t *testing.T) {
	dir := tree(t, map[string]string{"comsrv.toml": `[dtu]
max_connections = 500
allow = ["10.0.0.0/8", "192.168.1.7"]
replace = "if-silent"
replace_after = "30s"
secret = "s3cret-key"
max_unregistered_per_ip = 5

[[listener]]
name = "line"
profile = "line"
listen = ":1"

[[listener]]
name = "open"
listen = ":2"
allow = []
replace = "never"
secret_position = "prefix"
max_unregistered = 7
`, "channels/a.toml": baseChannels + `allow = ["172.16.0.0/12"]
replace = "never"
secret = "0123456789"

[[range]]
first = 10
last = 11
id = "{n}"
registration = "DTU{n}"
secret = "abcdefgh"
secret_position = "prefix"
replace = "if-silent"
`})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.AllListeners()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	for _, d := range l[:2] {
		if len(d.AllowNets) != 2 || d.AllowNets[0] != want[0] || d.AllowNets[1] != want[1] || d.Replace != ReplaceIfSilent ||
			d.ReplaceAfter.Duration != 30*time.Second || d.Secret != "s3cret-key" || d.SecretPosition != SecretSuffix ||
			d.MaxUnregistered != 64 || d.MaxUnregisteredPerIP != 5 {
			t.Errorf("listener %s: %+v", d.Name, d)
		}
	}
	if o := l[2]; len(o.AllowNets) != 0 || o.Replace != ReplaceNever || o.SecretPosition != SecretPrefix || o.MaxUnregistered != 7 {
		t.Errorf("listener open: %+v", o)
	}
	if d := Defaults().DTU; d.Replace != ReplaceAlways || d.MaxUnregistered != 1000 || d.MaxUnregisteredPerIP != 20 || d.ReplaceAfter.Duration != time.Minute {
		t.Errorf("defaults: %+v", d)
	}
	byID := map[string]*Channel{}
	for _, ch := range cfg.ChannelList {
		byID[ch.ID] = ch
	}
	if c := byID["1"]; c.Secret != "0123456789" || c.SecretPosition != SecretSuffix || c.Replace != ReplaceNever || len(c.AllowNets) != 1 {
		t.Errorf("channel 1: %+v", c)
	}
	if c := byID["11"]; c.Secret != "abcdefgh" || c.SecretPosition != SecretPrefix || c.Replace != ReplaceIfSilent || c.ReplaceAfter.Duration != DefaultReplaceAfter {
		t.Errorf("channel 11: %+v", c)
	}
	if !Allowed(nil, netip.MustParseAddr("1.2.3.4")) || !Allowed(want, netip.MustParseAddr("::ffff:10.1.2.3")) || Allowed(want, netip.MustParseAddr("192.168.1.8")) {
		t.Error("Allowed")
	}
}

func TestGuardKeyErrors(t *testing.T) {
	for _, tc := range []struct{ toml, chans, want string }{
		{"[dtu]\nallow = [\"10.0.0.0/8\", \"nope\"]\n", "", `comsrv.toml:2:24: key "dtu.allow[1]": "nope" is not a CIDR`},
		{"[dtu]\nreplace = \"sometimes\"\n", "", `comsrv.toml:2:11: key "dtu.replace": unknown value "sometimes" (want always, if-silent or never)`},
		{"[dtu]\nreplace_after = \"5s\"\n", "", `comsrv.toml:2:1: key "dtu.replace_after": only used with replace = "if-silent"`},
		{"[dtu]\nsecret = \"short\"\n", "", `comsrv.toml:2:10: key "dtu.secret": must be 8..64 bytes long (it is 5)`},
		{"[dtu]\nmax_unregistered_per_ip = -1\n", "", `comsrv.toml:2:27: key "dtu.max_unregistered_per_ip": -1 is out of range (0..100000)`},
		{"", baseChannels + "secret = \"has space!\"\n", `channels/a.toml:5:10: key "channel[0].secret": must be printable ASCII without spaces`},
		{"", baseChannels + "secret = \"bad*chars\"\n", `channels/a.toml:5:10: key "channel[0].secret": the registration with its secret does not match`},
		{"", "[[channel]]\nid = \"m\"\nurl = \"tcp://10.0.0.1:502\"\ntemplate = \"meter\"\nsecret = \"12345678\"\n", `channels/a.toml:5:1: key "channel[0].secret": only used by DTU channels`},
	} {
		files := map[string]string{"comsrv.toml": tc.toml}
		if tc.chans != "" {
			files["channels/a.toml"] = tc.chans
		}
		_, err := Load(filepath.Join(tree(t, files), "comsrv.toml"))
		wantErr(t, err, tc.want)
		if err != nil && (strings.Contains(err.Error(), "has space!") || strings.Contains(err.Error(), "bad*chars")) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
