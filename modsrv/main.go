// Command modsrv serves the model API of VoltEdge: REST, WebSocket and the web console over the model hashes in Redis.
//
// This build starts, connects to Redis, makes sure the Lua library is
// loaded and waits for a stop signal.
package main

import (
	"context"

	"github.com/voltedge/voltedge/internal/svc"
)

func main() {
	svc.Main("modsrv", func(ctx context.Context, env *svc.Env) error {
		<-ctx.Done()
		return nil
	})
}
