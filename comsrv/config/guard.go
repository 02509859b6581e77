package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
)

// Replacement policies of a listener or channel (the replace key): what a
// new connection with the registration id of a link that is up does.
const (
	ReplaceAlways   = "always"    // it replaces the link (default)
	ReplaceIfSilent = "if-silent" // it replaces the link only if the link received nothing for replace_after
	ReplaceNever    = "never"     // it is refused while the link is up
)

// Where a registration secret is sent, relative to the id.
const (
	SecretPrefix = "prefix"
	SecretSuffix = "suffix" // default
)

// Defaults and bounds of the connection guards.
const (
	DefaultReplaceAfter         = 60 * time.Second
	DefaultMaxUnregisteredPerIP = 20
	MinSecretLength             = 8
	MaxSecretLength             = 64
)

// DefaultMaxUnregistered is the default cap of unregistered sockets of a
// listener with maxConnections registered links: a tenth of it, within 64..1000.
func DefaultMaxUnregistered(maxConnections int) int {
	return min(1000, max(64, maxConnections/10))
}

// parseAllow parses an allow list of CIDRs (a bare address is one host).
func parseAllow(pos *conf.Positions, errs *conf.Errors, key string, list []string) []netip.Prefix {
	if len(list) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil {
				errs.Addf(pos, fmt.Sprintf("%s[%d]", key, i), "%q is not a CIDR such as \"10.0.0.0/8\" or \"192.168.1.7/32\"", s)
				continue
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// Allowed reports whether addr is in one of nets; an empty list allows every address.
func Allowed(nets []netip.Prefix, addr netip.Addr) bool {
	if len(nets) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// checkSecret validates a registration secret: MinSecretLength..MaxSecretLength
// printable ASCII bytes without spaces.
func checkSecret(pos *conf.Positions, errs *conf.Errors, key, secret string) {
	if len(secret) < MinSecretLength || len(secret) > MaxSecretLength {
		errs.Addf(pos, key, "must be %d..%d bytes long (it is %d)", MinSecretLength, MaxSecretLength, len(secret))
		return
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] <= ' ' || secret[i] > '~' {
			errs.Addf(pos, key, "must be printable ASCII without spaces (byte %d is not)", i+1)
			return
		}
	}
}

// checkGuard validates the connection guards of a listener whose keys k names.
func (d *DTU) checkGuard(pos *conf.Positions, errs *conf.Errors, k keyer) {
	p := k.own
	num(pos, errs, k.of("max_unregistered"), &d.MaxUnregistered, DefaultMaxUnregistered(d.MaxConnections), 1, 100000)
	num(pos, errs, k.of("max_unregistered_per_ip"), &d.MaxUnregisteredPerIP, DefaultMaxUnregisteredPerIP, 0, 100000)
	d.AllowNets = parseAllow(pos, errs, k.of("allow"), d.Allow)
	str(pos, errs, k.of("replace"), &d.Replace, ReplaceAlways, ReplaceAlways, ReplaceIfSilent, ReplaceNever)
	dur(pos, errs, k.of("replace_after"), &d.ReplaceAfter, DefaultReplaceAfter, time.Second)
	if pos.Defined(p+"replace_after") && d.Replace != ReplaceIfSilent {
		errs.Add(pos.KeyErrorf(p+"replace_after", "only used with replace = %q", ReplaceIfSilent))
	}
	str(pos, errs, k.of("secret_position"), &d.SecretPosition, SecretSuffix, SecretPrefix, SecretSuffix)
	if pos.Defined(k.of("secret")) {
		checkSecret(pos, errs, k.of("secret"), d.Secret)
		if d.Profile == ProfileTLV {
			errs.Add(pos.KeyErrorf(k.of("secret"), "the tlv profile's 4-byte id cannot carry a secret"))
		}
	}
}

// checkGuard validates the connection guards of a DTU channel (or range)
// whose keys start with k; url channels must set none.
func (cl *channelLoader) checkGuard(pos *conf.Positions, k string, c *Channel) bool {
	before := cl.errs.Len()
	if c.URL != "" {
		for _, f := range []string{"allow", "replace", "replace_after", "secret", "secret_position"} {
			if pos.Defined(k + f) {
				cl.errs.Add(pos.KeyErrorf(k+f, "only used by DTU channels (without url)"))
			}
		}
		return cl.errs.Len() == before
	}
	c.AllowNets = parseAllow(pos, cl.errs, k+"allow", c.Allow)
	if pos.Defined(k + "replace") {
		str(pos, cl.errs, k+"replace", &c.Replace, "", ReplaceAlways, ReplaceIfSilent, ReplaceNever)
	}
	if c.Replace == ReplaceIfSilent {
		dur(pos, cl.errs, k+"replace_after", &c.ReplaceAfter, DefaultReplaceAfter, time.Second)
	} else if pos.Defined(k + "replace_after") {
		cl.errs.Add(pos.KeyErrorf(k+"replace_after", "only used with replace = %q", ReplaceIfSilent))
	}
	switch {
	case pos.Defined(k + "secret"):
		checkSecret(pos, cl.errs, k+"secret", c.Secret)
		str(pos, cl.errs, k+"secret_position", &c.SecretPosition, SecretSuffix, SecretPrefix, SecretSuffix)
	case pos.Defined(k + "secret_position"):
		cl.errs.Add(pos.KeyErrorf(k+"secret_position", "only used with secret"))
	}
	return cl.errs.Len() == before
}

// checkSent checks that the registration of a channel with a secret, as its
// DTU sends it (the id with the secret), matches the registration pattern.
func (cl *channelLoader) checkSent(pos *conf.Positions, key string, c *Channel) bool {
	re := cl.cfg.DTU.Registration.Regexp
	if c.Secret == "" || re == nil || re.MatchString(WithSecret(c.Registration, c.Secret, c.SecretPosition)) {
		return true
	}
	cl.errs.Addf(pos, key, "the registration with its secret does not match dtu.registration.pattern %q (the pattern applies to the registration as sent)", cl.cfg.DTU.Registration.Pattern)
	return false
}

// WithSecret returns the registration a DTU sends: id with secret before
// (position "prefix") or after it.
func WithSecret(id, secret, position string) string {
	if position == SecretPrefix {
		return secret + id
	}
	return id + secret
}
