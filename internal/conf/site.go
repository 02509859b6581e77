package conf

import (
	"os"
	"regexp"
	"strings"
	"time"
)

// siteName is the form of a site id and of a consumer name: 1..64 of
// A-Z a-z 0-9 _ . -
var siteName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// SiteRule describes a valid site id, for error messages.
const SiteRule = "1..64 of A-Z a-z 0-9 _ . -"

// ValidSite reports whether s is a valid site id (or consumer name).
func ValidSite(s string) bool { return siteName.MatchString(s) }

// HostSite is the default site id of a box: its host name with every
// character outside A-Z a-z 0-9 _ . - replaced by '-', cut to 64 bytes
// ("edge" when there is no host name). netsrv, alarmsrv and modsrv use
// the same default, so they agree on one box without configuration.
func HostSite() string {
	h, _ := os.Hostname()
	s := strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_.-", r)) {
			return r
		}
		return '-'
	}, h)
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		s = "edge"
	}
	return s
}

// IntIn sets *v to def when key is not in the file, then adds an error
// naming key unless lo ≤ *v ≤ hi.
func IntIn(pos *Positions, errs *Errors, key string, v *int, def, lo, hi int) {
	if !pos.Defined(key) {
		*v = def
	}
	if *v < lo || *v > hi {
		errs.Addf(pos, key, "%d is out of range (%d..%d)", *v, lo, hi)
	}
}

// DurationIn is IntIn for durations.
func DurationIn(pos *Positions, errs *Errors, key string, v *Duration, def, lo, hi time.Duration) {
	if !pos.Defined(key) {
		v.Duration = def
	}
	if v.Duration < lo || v.Duration > hi {
		errs.Addf(pos, key, "%s is out of range (%s..%s)", v.Duration, lo, hi)
	}
}
