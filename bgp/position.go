package bgp

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps the dotted path of every key and table of a TOML document
// ("neighbors.1.config.neighbor-address", array tables numbered from 0) to
// the line it was written on, so errors found after decoding can still name
// a line.
type positions struct {
	lines map[string]int
}

func pathKey(parts []string) string { return strings.ToLower(strings.Join(parts, ".")) }

// indexPositions walks the document. It never fails: a document the parser
// rejects simply yields fewer positions (the syntax error is reported by the
// decoder with its own position).
func indexPositions(data []byte) *positions {
	pos := &positions{lines: make(map[string]int)}
	var p unstable.Parser
	p.Reset(data)
	arrays := make(map[string]int) // resolved path of an array table → last index
	var table []string
	resolve := func(keys []string) []string {
		var out []string
		for _, k := range keys {
			out = append(out, strings.ToLower(k))
			if idx, ok := arrays[pathKey(out)]; ok {
				out = append(out, strconv.Itoa(idx))
			}
		}
		return out
	}
	lineOf := func(n *unstable.Node) int {
		defer func() { _ = recover() }() // a node without raw bytes has no position
		if n.Raw.Length == 0 {
			return 0
		}
		return p.Shape(n.Raw).Start.Line
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			keys, line := keyParts(e, lineOf)
			if e.Kind == unstable.ArrayTable {
				// the parent part resolves through enclosing arrays; the
				// last part gets a new index
				parent := resolve(keys[:len(keys)-1])
				full := pathKey(append(parent, keys[len(keys)-1]))
				idx := 0
				if last, ok := arrays[full]; ok {
					idx = last + 1
				}
				arrays[full] = idx
				table = append(append(parent, strings.ToLower(keys[len(keys)-1])), strconv.Itoa(idx))
			} else {
				table = resolve(keys)
			}
			for i := 1; i < len(table); i++ {
				pos.setIfAbsent(table[:i], line)
			}
			pos.set(table, line)
		case unstable.KeyValue:
			pos.keyValue(table, e, lineOf)
		}
	}
	return pos
}

func keyParts(n *unstable.Node, lineOf func(*unstable.Node) int) ([]string, int) {
	var keys []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		keys = append(keys, string(k.Data))
		if line == 0 {
			line = lineOf(k)
		}
	}
	return keys, line
}

func (pos *positions) keyValue(table []string, e *unstable.Node, lineOf func(*unstable.Node) int) {
	keys, line := keyParts(e, lineOf)
	path := append(append([]string{}, table...), keys...)
	for i := range keys {
		// dotted keys also define their intermediate tables
		pos.setIfAbsent(path[:len(table)+i+1], line)
	}
	pos.value(path, e.Value(), line, lineOf)
}

func (pos *positions) value(path []string, v *unstable.Node, line int, lineOf func(*unstable.Node) int) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			pos.keyValue(path, it.Node(), lineOf)
		}
	case unstable.Array:
		it := v.Children()
		i := 0
		for it.Next() {
			el := it.Node()
			l := lineOf(el)
			if l == 0 {
				l = line
			}
			sub := append(append([]string{}, path...), strconv.Itoa(i))
			pos.setIfAbsent(sub, l)
			pos.value(sub, el, l, lineOf)
			i++
		}
	}
}

func (pos *positions) set(path []string, line int) {
	if line > 0 {
		pos.lines[pathKey(path)] = line
	}
}

func (pos *positions) setIfAbsent(path []string, line int) {
	if _, ok := pos.lines[pathKey(path)]; !ok {
		pos.set(path, line)
	}
}

// line returns the line of path, or of its closest ancestor that is written
// in the document, or 1.
func (pos *positions) line(path ...string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := pos.lines[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 1
}

// lineDotted is line for a path like "neighbors[0].config.peer-as" or
// "neighbors.0.config.peer-as".
func (pos *positions) lineDotted(p string) int {
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	return pos.line(strings.Split(p, ".")...)
}

// has reports whether path itself is written in the document.
func (pos *positions) has(path ...string) bool {
	_, ok := pos.lines[pathKey(path)]
	return ok
}
