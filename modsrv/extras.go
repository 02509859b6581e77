package main

import (
	"context"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/modsrv/api"
	"github.com/voltedge/voltedge/modsrv/web"
	"github.com/voltedge/voltedge/modsrv/ws"
)

// mountExtras mounts what modsrv serves beside the REST API (the WebSocket
// and the web console) on app, and starts their background work and the
// link index's (deps.Links, shared with the API), which ends with ctx. run waits for that work with the returned group after the
// HTTP server has stopped.
func mountExtras(ctx context.Context, app *fiber.App, deps api.Deps) (*sync.WaitGroup, error) {
	var bg sync.WaitGroup
	hub := ws.New(deps.Redis, ws.Options{
		Authorize:   deps.Auth.Check,
		StillValid:  deps.Auth.StillValid,
		RequireAuth: !deps.Config.ReadOpen,
		Origins:     deps.Config.WSOrigins,
		CommandTTL:  deps.Config.ControlTimeout.Duration,
		Results:     deps.Results,
		Links:       deps.Links,

		MaxClients:            deps.Config.WSMaxClients,
		ReservedClients:       reserved(deps.Config.WSReservedClients),
		MaxClientsPerIP:       deps.Config.WSMaxClientsPerIP,
		MaxTotalSubscriptions: deps.Config.WSMaxSubscriptions,
	}, deps.Log)
	hub.Mount(app)
	web.Mount(app)
	reg := deps.Metrics
	reg.GaugeFunc("modsrv_ws_clients", "WebSocket clients connected.", func() float64 { return float64(hub.Clients()) })
	reg.CounterFunc("modsrv_ws_slow_drops_total", "WebSocket clients dropped because their send queue was full.", func() float64 {
		return float64(hub.Stats().SlowDrops)
	})
	reg.CounterFunc("modsrv_ws_sent_total", "Messages sent to WebSocket clients.", func() float64 { return float64(hub.Stats().Sent) })
	reg.CounterFunc("modsrv_ws_commands_total", "WebSocket commands accepted.", func() float64 { return float64(hub.Stats().Commands) })
	bg.Add(1)
	go func() {
		defer bg.Done()
		hub.Run(ctx)
	}()
	if deps.Links != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			deps.Links.Run(ctx)
		}()
	}
	return &bg, nil
}

// reserved translates ws_reserved_clients for ws.Options, where zero means
// the default and a negative number none.
func reserved(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
