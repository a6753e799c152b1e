package metallb

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

func TestWidenInt32(t *testing.T) {
	doc := `
spec:
  versions:
  - schema:
      openAPIV3Schema:
        properties:
          myASN: {type: integer, format: int32, minimum: 0, maximum: 4294967295}
          port: {type: integer, format: int32, maximum: 16384}
          list:
            items:
            - peerASN: {type: integer, format: int32, maximum: 4294967295}
`
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// Plain JSON numbers (float64) here; ReadCRD's unstructured ones are
	// int64: WidenInt32 takes both.
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatal(err)
	}
	if n := WidenInt32(obj); n != 2 {
		t.Errorf("widened %d fields, want 2 (myASN, peerASN)", n)
	}
	props := obj["spec"].(map[string]any)["versions"].([]any)[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)["properties"].(map[string]any)
	for name, want := range map[string]string{"myASN": "int64", "port": "int32"} {
		if got := props[name].(map[string]any)["format"]; got != want {
			t.Errorf("%s: format %v, want %s", name, got, want)
		}
	}
	peer := props["list"].(map[string]any)["items"].([]any)[0].(map[string]any)["peerASN"].(map[string]any)
	if peer["format"] != "int64" {
		t.Errorf("peerASN in a list: format %v, want int64", peer["format"])
	}
}

// The manifest users apply, as the real-node lab applies it: MetalLB's
// images at this release, the BGPPeer CRD's ASNs widened, nothing else
// touched (same documents, same order).
func TestNativeManifest(t *testing.T) {
	m, err := NativeManifest()
	if IsUnavailable(err) {
		nstest.Skip(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{"quay.io/metallb/speaker:" + Version, "quay.io/metallb/controller:" + Version} {
		if !strings.Contains(m, "image: "+img+"\n") {
			t.Errorf("manifest does not run %s", img)
		}
	}
	var kinds []string
	for _, doc := range strings.Split(m, "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
		}
		var tree map[string]any
		if err := json.Unmarshal(js, &obj); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, &tree); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, obj.Kind+"/"+obj.Metadata.Name)
		if n := WidenInt32(tree); n != 0 {
			t.Errorf("%s %s: %d integers still too narrow for their maximum", obj.Kind, obj.Metadata.Name, n)
		}
		if obj.Metadata.Name == "bgppeers.metallb.io" && !strings.Contains(doc, "format: int64") {
			t.Errorf("BGPPeer CRD's ASNs not widened to int64")
		}
	}
	for _, want := range []string{"Namespace/metallb-system", "CustomResourceDefinition/bgppeers.metallb.io", "DaemonSet/speaker", "Deployment/controller", "ValidatingWebhookConfiguration/metallb-webhook-configuration"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("manifest lacks %s: %v", want, kinds)
		}
	}
}
