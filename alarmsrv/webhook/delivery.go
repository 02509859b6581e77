package webhook

// Delivery is one event to send to one target.
type Delivery struct {
	// ID is the delivery's id and the webhook-id header: the same on every
	// attempt, so that receivers can drop repeats. alarmsrv makes it from
	// the event id, the rule and the target.
	ID string `json:"id"`
	// Target is the target id (keys.WebhookTargets).
	Target string `json:"target"`
	// Key orders deliveries: of two deliveries with the same non-empty key
	// to the same target, the later is not sent before the earlier one is
	// done (delivered, dead or failed). Alarms use "{model}:{point}", so a
	// clear never overtakes its raise. Empty: no order.
	Key string `json:"key,omitempty"`
	// Body is the request body (by default the event's JSON).
	Body []byte `json:"body"`
	// TS is when the delivery was queued, Unix ms.
	TS int64 `json:"ts"`
}
