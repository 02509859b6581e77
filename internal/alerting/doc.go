// Package alerting holds what alarmsrv and modsrv share about events,
// rules and webhook targets: the JSON of an event as rules see it and
// webhooks carry it, the rule and target documents kept in Redis
// (keys.AlarmRules, keys.WebhookTargets), and the Standard Webhooks
// signature.
package alerting
