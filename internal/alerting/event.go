package alerting

// Event types. Custom events (keys.CustomEvents) keep their own type,
// prefixed: "custom:<type>".
const (
	DeviceOnline   = "device_online"
	DeviceOffline  = "device_offline"
	DeviceReplaced = "device_replaced"
	DeviceRefused  = "device_refused"
	ConnectFailed  = "connect_failed"
	AlarmRaised    = "alarm_raised"
	AlarmCleared   = "alarm_cleared"
	AlarmAcked     = "alarm_acked"
	Data           = "data"
	ControlResult  = "control_result"
	UploadWarning  = "upload_warning"
	CustomPrefix   = "custom:"
)

// Event is one thing that happened, as rules match it and as a webhook
// carries it by default (JSON).
type Event struct {
	// ID names the source entry: "<stream>/<entry id>", e.g.
	// "alarm:events/1732212345678-0"; with the rule and target it makes the
	// delivery's webhook-id, stable across retries.
	ID      string `json:"id"`
	Type    string `json:"type"`
	TS      int64  `json:"ts"` // Unix ms
	Site    string `json:"site,omitempty"`
	Channel string `json:"channel,omitempty"`
	Model   string `json:"model,omitempty"`
	Point   string `json:"point,omitempty"` // a model point name, or a channel point id when Model is empty
	Value   string `json:"value,omitempty"`
	Level   string `json:"level,omitempty"`
	// Rule is the rule that matched (set on deliveries).
	Rule string `json:"rule,omitempty"`
	// Fields are the source entry's fields as written (reason, remote,
	// limit, status, …).
	Fields map[string]string `json:"fields,omitempty"`
}
