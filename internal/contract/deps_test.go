package contract

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// services talk to each other only through Redis.
var services = []string{"comsrv", "modsrv", "alarmsrv", "netsrv"}

// TestNoServiceImportsAnother: no package of a service, tests included,
// depends on a package of another service, and no tool and no shared
// package (internal/, scripts/) depends on a service: what services share
// is in internal/ (this package for the Redis contracts) or scripts/.
func TestNoServiceImportsAnother(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gobin, "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(out)) + "/"
	for _, owner := range append(slices.Clone(services), "tools", "internal", "scripts") {
		cmd := exec.Command(gobin, "list", "-deps", "-test", "./"+owner+"/...")
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps -test ./%s/...: %v", owner, err)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			pkg, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			rel, ok := strings.CutPrefix(pkg, module)
			if !ok {
				continue
			}
			top, _, _ := strings.Cut(rel, "/")
			if top != owner && slices.Contains(services, top) && !seen[pkg] {
				seen[pkg] = true
				t.Errorf("%s depends on %s, a package of the service %s", owner, pkg, top)
			}
		}
	}
}
