package dtu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/voltedge/voltedge/comsrv/config"
)

// errNeedMore means the registration packet is not complete yet.
var errNeedMore = errors.New("registration incomplete")

// maxRegistration bounds what is buffered before a registration is complete.
const maxRegistration = 512

// parseRegistration extracts the registration id at the start of buf. It
// returns the rendered id and how many bytes it used (terminator included);
// bytes after that belong to the link. errNeedMore asks for more bytes; any
// other error refuses the connection.
func parseRegistration(buf []byte, r *config.Registration) (string, int, error) {
	var raw []byte
	var used int
	switch r.Mode {
	case "fixed":
		if len(buf) < r.Length {
			return "", 0, errNeedMore
		}
		raw, used = buf[:r.Length], r.Length
	default:
		term := r.TerminatorBytes
		if len(term) == 0 {
			term = []byte{'\n'}
		}
		limit := r.MaxLength
		if limit <= 0 {
			limit = 64
		}
		i := bytes.Index(buf, term)
		if i < 0 {
			if len(buf) > limit+len(term)+1 {
				return "", 0, fmt.Errorf("no terminator within %d bytes", limit)
			}
			return "", 0, errNeedMore
		}
		raw, used = buf[:i], i+len(term)
		if bytes.Equal(term, []byte{'\n'}) {
			raw = bytes.TrimSuffix(raw, []byte{'\r'})
		}
		if len(raw) > limit {
			return "", 0, fmt.Errorf("registration of %d bytes is longer than %d", len(raw), limit)
		}
	}
	if len(raw) == 0 {
		return "", 0, errors.New("empty registration")
	}
	id, err := renderID(raw, r.Encoding)
	if err != nil {
		return "", 0, err
	}
	if r.Regexp != nil && !r.Regexp.MatchString(id) {
		return "", 0, &patternError{id: id, re: r.Regexp}
	}
	return id, used, nil
}

func renderID(raw []byte, encoding string) (string, error) {
	switch encoding {
	case "hex":
		return strings.ToUpper(hex.EncodeToString(raw)), nil
	case "decimal":
		if len(raw) > 8 {
			return "", fmt.Errorf("decimal registration of %d bytes (at most 8)", len(raw))
		}
		var v uint64
		for _, b := range raw {
			v = v<<8 | uint64(b)
		}
		return strconv.FormatUint(v, 10), nil
	default:
		return string(raw), nil
	}
}

// quoteID renders an untrusted id for logs: quoted, non-printable bytes escaped, bounded.
func quoteID(id string) string {
	if len(id) > 80 {
		id = id[:80] + "…"
	}
	return strconv.QuoteToASCII(id)
}
