package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
)

// The two files of a config directory, and the two keys of the ConfigMap.
const (
	vipspeakerTOML = config.FileName
	gobgpConf      = config.GoBGPFileName
)

// Path validates a config directory or a ConfigMap manifest, whichever
// path is, and returns one `file:line: problem` error per problem.
func Path(path string) ([]error, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return Dir(path), nil
	}
	return Manifest(path), nil
}

// Dir validates a config directory: vipspeaker.toml and gobgp.conf.
func Dir(dir string) []error {
	var errs []error
	if _, cerrs := config.LoadDir(dir); len(cerrs) > 0 {
		errs = append(errs, cerrs...)
	}
	p := filepath.Join(dir, gobgpConf)
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
	default:
		errs = append(errs, bgp.Validate(p, data)...)
	}
	return errs
}

// Manifest validates the two keys of every ConfigMap in a YAML file.
// Line numbers point into the manifest, not into the embedded file.
func Manifest(path string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var (
		errs  []error
		found bool
	)
	for doc := 1; ; doc++ {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return append(errs, fmt.Errorf("%s: document %d: not valid YAML: %w", path, doc, err))
		}
		root := &n
		if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
			root = root.Content[0]
		}
		if root.Kind != yaml.MappingNode || scalarAt(root, "kind") != "ConfigMap" {
			continue
		}
		found = true
		dataNode := mapValue(root, "data")
		if dataNode == nil {
			continue
		}
		var (
			tomlData, bgpData []byte
			tomlCfg           *config.Config
			tomlOffset        int
		)
		for i := 0; i+1 < len(dataNode.Content); i += 2 {
			k, v := dataNode.Content[i], dataNode.Content[i+1]
			// Content of a block scalar starts on the line after its key.
			offset := v.Line - 1
			if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				offset = k.Line
			}
			switch k.Value {
			case vipspeakerTOML:
				c, cerrs := config.Parse(path, []byte(v.Value))
				errs = append(errs, shiftLines(cerrs, offset)...)
				if len(cerrs) == 0 {
					tomlData, tomlCfg, tomlOffset = []byte(v.Value), c, offset
					errs = append(errs, shiftLines(c.ClusterErrors(path), offset)...)
				}
			case gobgpConf:
				bgpData = []byte(v.Value)
				errs = append(errs, shiftLines(bgp.Validate(path, bgpData), offset)...)
			default:
				errs = append(errs, fmt.Errorf("%s:%d: data.%s: unknown key; the ConfigMap holds %s and %s", path, k.Line, k.Value, gobgpConf, vipspeakerTOML))
			}
		}
		// Settings of the two keys that exclude each other.
		errs = append(errs, shiftLines(config.CheckWithGoBGP(path, tomlData, tomlCfg, path+" (data."+gobgpConf+")", bgpData), tomlOffset)...)
	}
	if !found {
		errs = append(errs, fmt.Errorf("%s: no ConfigMap in this file", path))
	}
	return errs
}

func shiftLines(errs []error, offset int) []error {
	for _, e := range errs {
		var ce *config.Error
		var be *bgp.ConfigError
		switch {
		case errors.As(e, &ce):
			if ce.Line > 0 {
				ce.Line += offset
			}
		case errors.As(e, &be):
			if be.Line > 0 {
				be.Line += offset
			}
		}
	}
	return errs
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalarAt(m *yaml.Node, key string) string {
	if v := mapValue(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// NoteSecretRefs tells the user of `vipspeaker check` that the
// secret:NAME/KEY references in path (a config directory or a ConfigMap
// manifest) were checked for their form only: offline no Secret can be
// read; the agent reads them through the API server in cluster mode.
func NoteSecretRefs(w io.Writer, path string) {
	files := []string{path}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		files = []string{filepath.Join(path, vipspeakerTOML), filepath.Join(path, gobgpConf)}
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			l := sc.Text()
			if strings.Contains(l, "secret:") && (strings.Contains(l, "auth-password") || strings.Contains(l, "secret-file")) {
				n++
			}
		}
	}
	if n > 0 {
		fmt.Fprintf(w, "%s: note: %d secret:NAME/KEY reference(s) checked for their form only; the Secrets are read by the agent in cluster mode (namespace of the agent), not offline\n", path, n)
	}
}
