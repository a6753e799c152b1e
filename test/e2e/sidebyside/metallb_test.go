package sidebyside

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// readCRD reads one CRD file and widens every 32-bit integer whose declared
// maximum does not fit 32 bits to int64. MetalLB declares the ASNs
// (BGPPeer myASN, peerASN) `format: int32` with `maximum: 4294967295`, the
// unsigned 32-bit ASN range. kube-apiserver 1.37 accepts that CRD but then
// refuses every BGPPeer, whatever its ASNs: "Maximum boundary value must be
// of type integer with format int32 in spec.myASN" (it checks the bound
// against the format when validating objects; measured here). int64 holds
// the range and is what the schema means; MetalLB's own Go types (uint32)
// are not affected. The fix is made in memory: nothing of MetalLB is
// copied.
func readCRD(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRD: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: %w", filepath.Base(path), err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("CRD %s: %w", filepath.Base(path), err)
	}
	widenInt32(u.Object)
	return u, nil
}

// widenInt32 walks a decoded schema and turns `format: int32` into int64
// where the node's maximum exceeds math.MaxInt32. It returns how many
// nodes it changed.
func widenInt32(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		if v["format"] == "int32" {
			if max, ok := asFloat(v["maximum"]); ok && max > math.MaxInt32 {
				v["format"] = "int64"
				n++
			}
		}
		for _, c := range v {
			n += widenInt32(c)
		}
	case []any:
		for _, c := range v {
			n += widenInt32(c)
		}
	}
	return n
}

func asFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

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
	// Plain JSON numbers (float64) here; readCRD's unstructured ones are
	// int64: widenInt32 takes both.
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatal(err)
	}
	if n := widenInt32(obj); n != 2 {
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
