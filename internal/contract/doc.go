// Package contract describes what VoltEdge's services exchange through
// Redis, so that no service imports another: the control command as
// send_control queues it (Command, Parse), its outcome (Status, Outcome,
// Result), sending a control and waiting for its outcome (Sender, Results),
// the reload request and reply (ReloadReply), the field names of the
// channel status hash and of the event streams, and the consumer-group
// reader that alarmsrv and netsrv use on those streams (GroupReader).
//
// Key and channel names stay in internal/keys; the Lua library in scripts/
// implements the functions this package calls.
package contract
