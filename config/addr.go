package config

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
)

// Range is an inclusive range of addresses of one family: First <= Last.
type Range struct {
	First, Last netip.Addr
}

// PrefixRange is the range of all addresses of p.
func PrefixRange(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	return Range{First: first, Last: lastOf(p)}
}

// lastOf is the highest address of a masked prefix.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	bitsLen := p.Addr().BitLen()
	off := 128 - bitsLen // IPv4 lives in the last 4 bytes of As16
	for i := off + p.Bits(); i < 128; i++ {
		a[i/8] |= 1 << (7 - uint(i%8))
	}
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(a)
}

// String is "first-last", or the single address when First == Last.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// Contains reports whether a lies in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Prefixes are the fewest prefixes that together hold exactly r's
// addresses, in address order.
func (r Range) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for a := r.First; ; {
		bits := a.BitLen()
		for bits > 0 {
			wider := netip.PrefixFrom(a, bits-1).Masked()
			if wider.Addr() != a || lastOf(wider).Compare(r.Last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastOf(p)
		if last == r.Last {
			return out
		}
		a = last.Next()
	}
}

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() &&
		r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size is the number of addresses in r, saturated at math.MaxUint64 (an IPv6
// /64 or larger).
func (r Range) Size() uint64 {
	lhi, llo := u128(r.Last)
	fhi, flo := u128(r.First)
	hi, lo := sub128(lhi, llo, fhi, flo)
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return lo + 1
}

// All yields the addresses of r in ascending order.
func (r Range) All() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		if !r.First.IsValid() || r.First.Compare(r.Last) > 0 {
			return
		}
		for a := r.First; ; a = a.Next() {
			if !yield(a) || a == r.Last {
				return
			}
		}
	}
}

func u128(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func sub128(ahi, alo, bhi, blo uint64) (uint64, uint64) {
	lo, borrow := bits.Sub64(alo, blo, 0)
	hi, _ := bits.Sub64(ahi, bhi, borrow)
	return hi, lo
}

// Blocks is every address entry of the pool as a range, sorted by first
// address (IPv4 before IPv6). Validation guarantees they do not overlap.
func (p *Pool) Blocks() []Range {
	out := make([]Range, 0, len(p.Prefixes)+len(p.Ranges))
	for _, pf := range p.Prefixes {
		out = append(out, PrefixRange(pf))
	}
	out = append(out, p.Ranges...)
	slices.SortFunc(out, func(a, b Range) int { return a.First.Compare(b.First) })
	return out
}

// Contains reports whether a is an address of the pool (and, with
// AvoidBuggyIPs, not an IPv4 address ending in .0 or .255).
func (p *Pool) Contains(a netip.Addr) bool {
	if p.AvoidBuggyIPs && buggy(a) {
		return false
	}
	for _, pf := range p.Prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Size is the number of usable addresses of the pool per family, each
// saturated at math.MaxUint64.
func (p *Pool) Size() (v4, v6 uint64) {
	for _, r := range p.Blocks() {
		n := r.Size()
		if r.First.Is4() {
			if p.AvoidBuggyIPs {
				n -= buggyIn(r)
			}
			v4 = satAdd(v4, n)
		} else {
			v6 = satAdd(v6, n)
		}
	}
	return v4, v6
}

// All yields the usable addresses of the pool in ascending order, IPv4 first.
// The sequence is lazy: a large IPv6 prefix is fine as long as the caller
// stops early.
func (p *Pool) All() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for _, r := range p.Blocks() {
			for a := range r.All() {
				if p.AvoidBuggyIPs && buggy(a) {
					continue
				}
				if !yield(a) {
					return
				}
			}
		}
	}
}

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// buggy reports an IPv4 address ending in .0 or .255.
func buggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// buggyIn counts the IPv4 addresses of r ending in .0 or .255.
func buggyIn(r Range) uint64 {
	f := uint64(binary.BigEndian.Uint32(r.First.AsSlice()))
	l := uint64(binary.BigEndian.Uint32(r.Last.AsSlice()))
	// count of x in [0,n] with x%256 == k
	upTo := func(n uint64, k uint64) uint64 {
		if n < k {
			return 0
		}
		return (n-k)/256 + 1
	}
	count := func(k uint64) uint64 {
		c := upTo(l, k)
		if f > 0 {
			c -= upTo(f-1, k)
		}
		return c
	}
	return count(0) + count(255)
}

// PoolOf returns the pool holding a, or nil.
func (c *Config) PoolOf(a netip.Addr) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Contains(a) {
			return &c.Pools[i]
		}
	}
	return nil
}

// Pool returns the pool called name, or nil.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

// special address space no pool may touch.
var forbidden = []struct {
	r    Range
	what string
}{
	{PrefixRange(netip.MustParsePrefix("0.0.0.0/32")), "the unspecified address"},
	{PrefixRange(netip.MustParsePrefix("127.0.0.0/8")), "loopback space"},
	{PrefixRange(netip.MustParsePrefix("169.254.0.0/16")), "link-local space"},
	{PrefixRange(netip.MustParsePrefix("224.0.0.0/4")), "multicast space"},
	{PrefixRange(netip.MustParsePrefix("255.255.255.255/32")), "the limited broadcast address"},
	{PrefixRange(netip.MustParsePrefix("::/128")), "the unspecified address"},
	{PrefixRange(netip.MustParsePrefix("::1/128")), "the loopback address"},
	{PrefixRange(netip.MustParsePrefix("::ffff:0:0/96")), "IPv4-mapped space (write the IPv4 address)"},
	{PrefixRange(netip.MustParsePrefix("fe80::/10")), "link-local space"},
	{PrefixRange(netip.MustParsePrefix("ff00::/8")), "multicast space"},
}

// parseEntry parses one pool address entry: a CIDR, a range "a-b" or a
// single address. Exactly one of the results is valid on success.
func parseEntry(s string) (netip.Prefix, Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, Range{}, errors.New("empty address")
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := parseAddr(strings.TrimSpace(first))
		if err != nil {
			return netip.Prefix{}, Range{}, fmt.Errorf("range %q: start: %w", s, err)
		}
		b, err := parseAddr(strings.TrimSpace(last))
		if err != nil {
			return netip.Prefix{}, Range{}, fmt.Errorf("range %q: end: %w", s, err)
		}
		if a.Is4() != b.Is4() {
			return netip.Prefix{}, Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if a.Compare(b) > 0 {
			return netip.Prefix{}, Range{}, fmt.Errorf("range %q: start is after end", s)
		}
		return netip.Prefix{}, Range{First: a, Last: b}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, Range{}, fmt.Errorf("%q is not a CIDR: %w", s, unquote(err))
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, Range{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, Range{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, m)
		}
		return p, Range{}, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Prefix{}, Range{}, err
	}
	return netip.Prefix{}, Range{First: a, Last: a}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	return a, nil
}

// unquote drops the input echo netip puts in front of its parse errors.
func unquote(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	return err
}

// checkSpecial reports whether r touches address space no pool may hold.
func checkSpecial(r Range) error {
	for _, f := range forbidden {
		if r.Overlaps(f.r) {
			return fmt.Errorf("includes %s (%s)", f.what, f.r)
		}
	}
	return nil
}

func compareRange(a, b Range) int {
	return cmp.Or(a.First.Compare(b.First), a.Last.Compare(b.Last))
}
