package main

import (
	"io"
	"maps"
	"strings"
	"testing"
)

func TestRunFlagsNodeLabels(t *testing.T) {
	f, err := parseRunFlags([]string{"--node-name", "n1", "--services-dir", "/x", "--node-labels", "topology.kubernetes.io/zone=rack1,tier=edge"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"topology.kubernetes.io/zone": "rack1", "tier": "edge"}; !maps.Equal(f.nodeLabels, want) {
		t.Errorf("node labels %v, want %v", f.nodeLabels, want)
	}
	_, err = parseRunFlags([]string{"--node-name", "n1", "--node-labels", "zone in (a,b)"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--node-labels") {
		t.Errorf("a selector instead of labels: err %v, want one naming --node-labels", err)
	}
}
