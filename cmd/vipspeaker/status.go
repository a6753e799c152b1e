package main

import (
	"io"

	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/status"
)

// statusCommand is `vipspeaker status`: the local agent's report, or with
// --cluster the cluster's from the API server.
func statusCommand(args []string, stdout, stderr io.Writer) int {
	return status.Command(args, stdout, stderr, nodestate.StatusCluster)
}
