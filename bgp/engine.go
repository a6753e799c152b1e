package bgp

import (
	"context"
	"io"
	"log/slog"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// policyEngineCheck loads the policies into a scratch GoBGP instance that
// never starts BGP (no listener, no peers), so whatever GoBGP's policy engine
// rejects (a bad regular expression, a malformed community) is found before
// the running speaker is touched.
func policyEngineCheck(c *oc.BgpConfigSet) error {
	sets, policies, err := apiPolicies(c)
	if err != nil {
		return err
	}
	if len(sets) == 0 && len(policies) == 0 {
		return nil
	}
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.NewTextHandler(io.Discard, nil)), nil))
	go s.Serve()
	defer s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: sets, Policies: policies})
}
