package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
)

// Message types a client sends.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeCommand     = "command"
)

// Message types the server sends.
const (
	TypeUpdate     = "update"
	TypeQuality    = "quality"
	TypeChannel    = "channel"
	TypeAlarm      = "alarm"
	TypeAck        = "ack"
	TypeResponse   = "response"
	TypeSubscribed = "subscribed"
	TypeError      = "error"
)

// Response statuses of a command.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusTimeout = "timeout"
)

// Bounds of the fields of a client message.
const (
	maxRequestRef = 128 // bytes of a requestRef
	maxValue      = 64  // bytes of a command value (the Lua library's bound)
)

// request is one message from a client, every type in one shape.
type request struct {
	Type       string          `json:"type"`
	Models     []string        `json:"models"`
	Channels   []string        `json:"channels"`
	Alarms     *bool           `json:"alarms"`
	RequestRef string          `json:"requestRef"`
	Model      string          `json:"model"`
	Control    string          `json:"control"`
	Value      json.RawMessage `json:"value"`
}

// errorMessage is sent for a client message that cannot be served.
type errorMessage struct {
	Type       string `json:"type"`
	RequestRef string `json:"requestRef,omitempty"`
	Message    string `json:"message"`
}

// subscribedMessage confirms a subscribe or unsubscribe with the client's
// whole subscription.
type subscribedMessage struct {
	Type     string   `json:"type"`
	Models   []string `json:"models"`
	Channels []string `json:"channels"`
	Alarms   bool     `json:"alarms"`
	// Unknown lists the ids of the request that name no known model or
	// channel; they are not subscribed.
	Unknown []string `json:"unknown,omitempty"`
	// Meta gives, for the models of a subscribe request that have mapped
	// points, the unit and type of each point: model → point → meta.
	Meta map[string]map[string]PointMeta `json:"meta,omitempty"`
}

// ackMessage answers a command: accepted with its id, or refused with a reason.
type ackMessage struct {
	Type       string `json:"type"`
	RequestRef string `json:"requestRef"`
	Accepted   bool   `json:"accepted"`
	ID         string `json:"id,omitempty"`
	Code       string `json:"code,omitempty"` // why not accepted, as REST's error code
	Reason     string `json:"reason,omitempty"`
}

// responseMessage carries the outcome of an accepted command.
type responseMessage struct {
	Type       string            `json:"type"`
	RequestRef string            `json:"requestRef"`
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	Result     map[string]string `json:"result,omitempty"`
	Message    string            `json:"message,omitempty"`
}

// channelMessage is the periodic status of a subscribed channel.
type channelMessage struct {
	Type    string         `json:"type"`
	Channel string         `json:"channel"`
	Name    string         `json:"name"`   // the channel's name ("" if it has none)
	Status  map[string]any `json:"status"` // typed as REST types it (contract.ChannelTyped)
}

// alarmMessage is one entry of the alarm event stream. The stream's own
// "type" field (raise or clear) is sent as "event".
type alarmMessage struct {
	Type   string            `json:"type"`
	ID     string            `json:"id"`
	Fields map[string]string `json:"-"`
}

// MarshalJSON flattens the stream entry's fields beside type and id.
func (m alarmMessage) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(m.Fields)+2)
	for k, v := range m.Fields {
		switch k {
		case "type":
			out["event"] = v
		case "id":
			out["entry_id"] = v
		default:
			out[k] = contract.AlarmFieldValue(k, v) // typed as GET /alarms types it
		}
	}
	out["type"] = m.Type
	out["id"] = m.ID
	return json.Marshal(out)
}

// parseRequest decodes and validates one client message. The error, if any,
// is meant for the client.
func parseRequest(data []byte, maxSubs int) (*request, error) {
	var r request
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("invalid JSON: %s", clip(err.Error(), 120))
	}
	if dec.More() {
		return nil, errors.New("invalid JSON: one object per message")
	}
	if len(r.RequestRef) > maxRequestRef {
		return nil, fmt.Errorf("requestRef is longer than %d bytes", maxRequestRef)
	}
	switch r.Type {
	case TypeSubscribe, TypeUnsubscribe:
		if len(r.Models) > maxSubs || len(r.Channels) > maxSubs {
			return &r, fmt.Errorf("at most %d models and %d channels per client", maxSubs, maxSubs)
		}
		for _, m := range r.Models {
			if !keys.ValidID(m) {
				return &r, fmt.Errorf("invalid model id %s", quoteClip(m))
			}
		}
		for _, ch := range r.Channels {
			if !keys.ValidID(ch) {
				return &r, fmt.Errorf("invalid channel id %s", quoteClip(ch))
			}
		}
	case TypeCommand:
		if !keys.ValidID(r.Model) {
			return &r, fmt.Errorf("invalid model id %s", quoteClip(r.Model))
		}
		if !keys.ValidID(r.Control) {
			return &r, fmt.Errorf("invalid control name %s", quoteClip(r.Control))
		}
		if _, err := commandValue(r.Value); err != nil {
			return &r, err
		}
	case "":
		return &r, errors.New(`missing "type"`)
	default:
		return &r, fmt.Errorf("unknown type %s", quoteClip(r.Type))
	}
	return &r, nil
}

// commandValue returns a command's value as text: a JSON number as written,
// or the content of a JSON string. The Lua library checks that it is a number.
func commandValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", errors.New(`missing "value"`)
	}
	var s string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("invalid value: %s", clip(err.Error(), 80))
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s = string(raw)
	case 't':
		s = "1"
	case 'f':
		s = "0"
	default:
		return "", errors.New("value must be a number or a string holding a number")
	}
	if s == "" || len(s) > maxValue {
		return "", fmt.Errorf("value must be 1 to %d bytes", maxValue)
	}
	return s, nil
}

// relayPayload turns an update:{model} payload into the message clients
// receive: the payload with "type" first ("quality" when it carries quality
// instead of values). It returns nil for a payload that is not a JSON object.
func relayPayload(payload []byte) []byte {
	p := bytes.TrimSpace(payload)
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return nil
	}
	var probe struct {
		Quality json.RawMessage `json:"quality"`
	}
	if err := json.Unmarshal(p, &probe); err != nil {
		return nil
	}
	head := `{"type":"` + TypeUpdate + `"`
	if len(probe.Quality) > 0 {
		head = `{"type":"` + TypeQuality + `"`
	}
	rest := bytes.TrimSpace(p[1:])
	out := make([]byte, 0, len(head)+1+len(rest))
	out = append(out, head...)
	if rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// clip shortens s to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// quoteClip quotes a client-supplied string for an error message, bounded.
func quoteClip(s string) string { return strconv.Quote(clip(s, 64)) }

// marshal encodes an outgoing message.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }
