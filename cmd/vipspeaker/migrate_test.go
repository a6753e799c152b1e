package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `vipspeaker migrate` of MetalLB's resources writes a ConfigMap that
// `vipspeaker check` accepts, says on stderr what it did not carry over,
// and exits 3 for it.
func TestMigrateThenCheck(t *testing.T) {
	var out, errb bytes.Buffer
	code := dispatch([]string{"migrate", filepath.Join("..", "..", "config", "migrate", "testdata", "metallb.yaml")}, &out, &errb)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (notes); stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "not carried over: BGPPeer/tor2: not carried over: routerID") {
		t.Errorf("stderr lacks the routerID note:\n%s", errb.String())
	}
	if !strings.Contains(out.String(), `peers = ["198.18.0.1"]`) || strings.Contains(errb.String(), "spec.peers") {
		t.Errorf("BGPAdvertisement prod's peers [tor1] not carried over as tor1's address:\n%s\n%s", out.String(), errb.String())
	}
	cm := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(cm, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var co, ce bytes.Buffer
	if code := dispatch([]string{"check", cm}, &co, &ce); code != 0 {
		t.Fatalf("vipspeaker check of the migrated ConfigMap: exit %d\n%s%s\n%s", code, co.String(), ce.String(), out.String())
	}
	dir := t.TempDir()
	if code := dispatch([]string{"migrate", "-dir", dir, filepath.Join("..", "..", "config", "migrate", "testdata", "openelb.yaml")}, &co, &ce); code != 3 {
		t.Fatalf("migrate -dir: exit %d\n%s", code, ce.String())
	}
	if code := dispatch([]string{"check", dir}, &co, &ce); code != 0 {
		t.Fatalf("vipspeaker check of the migrated directory: exit %d\n%s", code, ce.String())
	}
}
