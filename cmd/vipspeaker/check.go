package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
)

// The two files of a config directory, and the two keys of the ConfigMap.
const (
	vipspeakerTOML = "vipspeaker.toml"
	gobgpConf      = "gobgp.conf"
)

// checkCommand validates a config directory or a ConfigMap manifest with the
// same code the running agent uses. Exit 0: valid; 1: one `file:line:
// problem` line per error; 2: usage.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vipspeaker check PATH   (a directory holding gobgp.conf / vipspeaker.toml, or a ConfigMap manifest)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	st, err := os.Stat(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	var errs []error
	if st.IsDir() {
		errs = checkDir(path)
	} else {
		errs = checkManifest(path)
	}
	for _, e := range errs {
		fmt.Fprintln(stdout, e)
	}
	noteSecretRefs(stdout, path) // kube_check.go
	if len(errs) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", path)
	return 0
}

func checkDir(dir string) []error {
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

// checkManifest validates the two keys of every ConfigMap in a YAML file.
// Line numbers point into the manifest, not into the embedded file.
func checkManifest(path string) []error {
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
