package contract

import (
	"encoding/json"
	"fmt"
)

// ReloadReply is comsrv's answer to a reload request, published as JSON on
// keys.ReloadResult; the request is published on keys.Reload with the
// request id as its message.
//
//	{"id":"9f86d081884c7d65","ok":true,"message":"","added":2,"changed":1,"removed":0}
type ReloadReply struct {
	ID      string `json:"id"`      // the request id this answers
	OK      bool   `json:"ok"`      // the new configuration is in use
	Message string `json:"message"` // why the reload was refused, or a note
	Added   int    `json:"added"`   // channels added
	Changed int    `json:"changed"` // channels whose settings or template changed
	Removed int    `json:"removed"` // channels removed
}

// MaxReloadReply bounds the size of a reload reply message.
const MaxReloadReply = 64 << 10

// ParseReloadReply decodes a message of keys.ReloadResult.
func ParseReloadReply(b []byte) (ReloadReply, error) {
	var r ReloadReply
	if len(b) > MaxReloadReply {
		return r, fmt.Errorf("reload reply of %d bytes is too long (at most %d)", len(b), MaxReloadReply)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return ReloadReply{}, fmt.Errorf("reload reply %.80q: %w", b, err)
	}
	if r.ID == "" {
		return ReloadReply{}, fmt.Errorf("reload reply %.80q: no id", b)
	}
	return r, nil
}
