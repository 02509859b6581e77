package fleet

import (
	"log/slog"
	"sync/atomic"
)

// Stats counts what a fleet of devices does. All fields are updated
// atomically and may be read at any time; one Stats is shared by all devices.
type Stats struct {
	Connected    atomic.Int64 // connections open now
	Connects     atomic.Int64 // connections made (registration sent)
	Reconnects   atomic.Int64 // connections lost or dials failed, then retried
	DialErrors   atomic.Int64 // dials that failed
	Requests     atomic.Int64 // requests addressed to our slaves (or broadcast)
	Responses    atomic.Int64 // responses sent, exceptions included
	Exceptions   atomic.Int64 // exception responses sent
	Dropped      atomic.Int64 // requests left unanswered on purpose (DropEvery)
	Corrupted    atomic.Int64 // responses sent with a bad CRC on purpose (CorruptEvery)
	Heartbeats   atomic.Int64 // heartbeat packets sent
	GarbageBytes atomic.Int64 // received bytes skipped while resynchronizing
	BytesIn      atomic.Int64
	BytesOut     atomic.Int64

	DataSent         atomic.Int64 // data lines (line profile) and data frames (tlv) sent
	LinesIn          atomic.Int64 // lines received by line devices
	LinesTruncated   atomic.Int64 // received lines longer than MaxLineLength, cut
	RegistrationAcks atomic.Int64 // tlv registration acks received
	HeartbeatAcks    atomic.Int64 // tlv heartbeat frames received
	DataAcks         atomic.Int64 // tlv data frames received
	BadFrames        atomic.Int64 // tlv frames of unknown type or without a valid request inside

	lastErr atomic.Pointer[string]
}

// StatsSnapshot is a copy of Stats at one moment.
type StatsSnapshot struct {
	Connected, Connects, Reconnects, DialErrors         int64
	Requests, Responses, Exceptions, Dropped, Corrupted int64
	Heartbeats, GarbageBytes, BytesIn, BytesOut         int64
	DataSent, LinesIn, LinesTruncated                   int64
	RegistrationAcks, HeartbeatAcks, DataAcks           int64
	BadFrames                                           int64
	LastError                                           string
}

// setError records the latest connection error.
func (s *Stats) setError(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	snap := StatsSnapshot{
		Connected: s.Connected.Load(), Connects: s.Connects.Load(), Reconnects: s.Reconnects.Load(),
		DialErrors: s.DialErrors.Load(), Requests: s.Requests.Load(), Responses: s.Responses.Load(),
		Exceptions: s.Exceptions.Load(), Dropped: s.Dropped.Load(), Corrupted: s.Corrupted.Load(),
		Heartbeats: s.Heartbeats.Load(), GarbageBytes: s.GarbageBytes.Load(),
		BytesIn: s.BytesIn.Load(), BytesOut: s.BytesOut.Load(),
		DataSent: s.DataSent.Load(), LinesIn: s.LinesIn.Load(), LinesTruncated: s.LinesTruncated.Load(),
		RegistrationAcks: s.RegistrationAcks.Load(), HeartbeatAcks: s.HeartbeatAcks.Load(),
		DataAcks: s.DataAcks.Load(), BadFrames: s.BadFrames.Load(),
	}
	if p := s.lastErr.Load(); p != nil {
		snap.LastError = *p
	}
	return snap
}

// Attrs renders the snapshot as log attributes. The counters of the line
// and tlv profiles appear only when they are not zero.
func (s StatsSnapshot) Attrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.Int64("connected", s.Connected), slog.Int64("connects", s.Connects),
		slog.Int64("reconnects", s.Reconnects), slog.Int64("dial_errors", s.DialErrors),
		slog.Int64("requests", s.Requests), slog.Int64("responses", s.Responses),
		slog.Int64("exceptions", s.Exceptions), slog.Int64("dropped", s.Dropped),
		slog.Int64("corrupted", s.Corrupted), slog.Int64("heartbeats", s.Heartbeats),
		slog.Int64("garbage_bytes", s.GarbageBytes), slog.Int64("bytes_in", s.BytesIn),
		slog.Int64("bytes_out", s.BytesOut),
	}
	for _, c := range [...]struct {
		name string
		v    int64
	}{
		{"data_sent", s.DataSent}, {"lines_in", s.LinesIn}, {"lines_truncated", s.LinesTruncated},
		{"registration_acks", s.RegistrationAcks}, {"heartbeat_acks", s.HeartbeatAcks},
		{"data_acks", s.DataAcks}, {"bad_frames", s.BadFrames},
	} {
		if c.v != 0 {
			attrs = append(attrs, slog.Int64(c.name, c.v))
		}
	}
	if s.LastError != "" {
		attrs = append(attrs, slog.String("last_error", s.LastError))
	}
	return attrs
}
