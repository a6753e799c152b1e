package config

import (
	"bytes"
	"sort"
	"strconv"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps a field path as this package names it in errors
// ("pools[1].addresses[2]", "layer2.gratuitous-count") to the line where it
// is written. Array tables get indices in the order they appear; array
// elements get the line of the element, so an error in a multi-line array
// points at the offending entry.
type positions struct {
	lines   map[string]int
	newline []int // offsets of '\n'
}

func indexPositions(data []byte) *positions {
	ps := &positions{lines: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			ps.newline = append(ps.newline, i)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	counts := map[string]int{} // array table path -> elements so far
	table := ""                // current table path with indices
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			path := ""
			var keyNode *unstable.Node
			for it.Next() {
				keyNode = it.Node()
				path = join(path, string(keyNode.Data))
				if it.IsLast() && e.Kind == unstable.ArrayTable {
					n := counts[path]
					counts[path] = n + 1
					path = path + "[" + strconv.Itoa(n) + "]"
				} else if n, ok := counts[path]; ok && n > 0 {
					path = path + "[" + strconv.Itoa(n-1) + "]"
				}
				ps.set(path, keyNode.Raw)
			}
			table = path
		case unstable.KeyValue:
			ps.keyval(table, e)
		}
	}
	return ps
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func (ps *positions) set(path string, r unstable.Range) {
	if _, ok := ps.lines[path]; ok {
		return
	}
	if r.Length == 0 && r.Offset == 0 {
		return
	}
	ps.lines[path] = ps.line(int(r.Offset))
}

func (ps *positions) line(offset int) int {
	return sort.SearchInts(ps.newline, offset) + 1
}

func (ps *positions) keyval(prefix string, kv *unstable.Node) {
	it := kv.Key()
	path := prefix
	var keyRaw unstable.Range
	for it.Next() {
		path = join(path, string(it.Node().Data))
		keyRaw = it.Node().Raw
		ps.set(path, keyRaw)
	}
	ps.value(path, kv.Value())
}

func (ps *positions) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			el := it.Node()
			if el.Kind == unstable.Comment {
				continue
			}
			ep := path + "[" + strconv.Itoa(i) + "]"
			ps.set(ep, el.Raw)
			if _, ok := ps.lines[ep]; !ok {
				ps.lines[ep] = ps.lines[path]
			}
			ps.value(ep, el)
			i++
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if it.Node().Kind == unstable.KeyValue {
				ps.keyval(path, it.Node())
			}
		}
	}
}

// lineOf returns the line of the first of paths that is known, falling back
// to the parents of the last one; 0 when nothing is known.
func (ps *positions) lineOf(paths ...string) int {
	for _, p := range paths {
		if l, ok := ps.lines[p]; ok {
			return l
		}
	}
	if len(paths) == 0 {
		return 0
	}
	p := paths[len(paths)-1]
	for p != "" {
		i := bytes.LastIndexAny([]byte(p), ".[")
		if i < 0 {
			break
		}
		p = p[:i]
		if l, ok := ps.lines[p]; ok {
			return l
		}
	}
	return 0
}

// pathAt names a key that go-toml reported without array indices
// ("pools.layer2.foo") by the indexed path written on the same line
// ("pools[1].layer2.foo").
func (ps *positions) pathAt(line int, key []string) string {
	plain := keyString(key)
	if len(key) == 0 {
		return plain
	}
	best := ""
	for p, l := range ps.lines {
		if l != line || stripIndices(p) != plain {
			continue
		}
		if best == "" || p < best {
			best = p
		}
	}
	if best == "" {
		return plain
	}
	return best
}

func stripIndices(p string) string {
	var b []byte
	depth := 0
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '[':
			depth++
		case p[i] == ']':
			depth--
		case depth == 0:
			b = append(b, p[i])
		}
	}
	return string(b)
}
