package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/vipspeaker/vipspeaker/routing"
)

// GoBGPFileName is GoBGP's config file beside FileName in a config
// directory (package bgp owns its contents).
const GoBGPFileName = "gobgp.conf"

// CheckWithGoBGP checks what vipspeaker.toml and gobgp.conf decide
// together: c, parsed from file (data), against the gobgp.conf read from
// gobgpFile (gobgp). Of gobgp.conf only the global AS, the neighbors and
// [zebra.config] enabled are read; a gobgp.conf that does not parse is
// package bgp's to report, and yields no error here.
//
// A pool's [pools.advertise] peers must be neighbors of gobgp.conf.
//
// [import-to-kernel] enabled = true and [zebra.config] enabled = true are
// refused together: with zebra, GoBGP hands the routes learned from peers
// to zebra, which installs them in the kernel with protocol bgp; the
// native import would write the same prefixes into a kernel table with
// the same protocol, and whichever wrote last would win, each removing the
// other's route on withdrawal. On a node with FRR, zebra is the one to
// write the kernel's routes.
func CheckWithGoBGP(file string, data []byte, c *Config, gobgpFile string, gobgp []byte) []error {
	if c == nil {
		return nil
	}
	var errs []error
	if cp := c.ControlPlane; cp != nil && cp.Mode == routing.ModeBGP {
		if peer := ibgpNeighbor(gobgp); peer != "" {
			errs = append(errs, &Error{File: file, Line: indexPositions(data).lineOf("control-plane.mode", "control-plane"), Field: "control-plane.mode",
				Msg: fmt.Sprintf("bgp mode needs eBGP sessions, and neighbor %s in %s is in the node's own AS: a node whose check fails announces the VIP with its AS prepended, which an iBGP peer drops as a loop", peer, gobgpFile)})
		}
	}
	errs = append(errs, undefinedPeers(file, data, c, gobgpFile, gobgp)...)
	if !c.ImportToKernel.Enabled || !zebraEnabled(gobgp) {
		return errs
	}
	return append(errs, &Error{
		File:  file,
		Line:  indexPositions(data).lineOf("import-to-kernel.enabled", "import-to-kernel"),
		Field: "import-to-kernel.enabled",
		Msg: fmt.Sprintf("[import-to-kernel] enabled = true and [zebra.config] enabled = true in %s exclude each other: "+
			"both would write the routes learned from peers into the kernel; with FRR on the node let zebra install them "+
			"(remove [import-to-kernel]), without FRR turn zebra off", gobgpFile),
	})
}

// gobgpFile is what this package reads of a gobgp.conf: the global AS and
// the [[neighbors]] (ok false when the file does not parse: bgp reports
// that).
type gobgpFile struct {
	Global struct {
		Config struct {
			As uint32 `toml:"as"`
		} `toml:"config"`
	} `toml:"global"`
	Neighbors []struct {
		Config struct {
			Address   string `toml:"neighbor-address"`
			Interface string `toml:"neighbor-interface"`
			PeerAs    uint32 `toml:"peer-as"`
		} `toml:"config"`
	} `toml:"neighbors"`
}

func readGoBGP(gobgp []byte) (f gobgpFile, ok bool) {
	return f, toml.NewDecoder(bytes.NewReader(gobgp)).Decode(&f) == nil
}

// ibgpNeighbor returns a gobgp.conf neighbor in the global AS ("" when
// none, or when the file does not parse: bgp reports that).
func ibgpNeighbor(gobgp []byte) string {
	f, ok := readGoBGP(gobgp)
	if !ok || f.Global.Config.As == 0 {
		return ""
	}
	for _, n := range f.Neighbors {
		if n.Config.PeerAs == f.Global.Config.As {
			return n.Config.Address + n.Config.Interface
		}
	}
	return ""
}

// undefinedPeers refuses a pool's peer that is not a [[neighbors]] entry
// of gobgp.conf (by neighbor-address, or neighbor-interface for an
// unnumbered one). Without a gobgp.conf (nil), or with one that does not
// parse, there is nothing to check against.
func undefinedPeers(file string, data []byte, c *Config, gobgpFile string, gobgp []byte) []error {
	f, ok := readGoBGP(gobgp)
	if gobgp == nil || !ok {
		return nil
	}
	defined := map[string]bool{}
	for _, n := range f.Neighbors {
		if a, err := netip.ParseAddr(strings.TrimSpace(n.Config.Address)); err == nil {
			defined[a.Unmap().String()] = true
		}
		if n.Config.Interface != "" {
			defined[n.Config.Interface] = true
		}
	}
	var errs []error
	var pos *positions
	for i, p := range c.Pools {
		for j, peer := range p.Advertise.Peers {
			if defined[peer] {
				continue
			}
			if pos == nil {
				pos = indexPositions(data)
			}
			field := fmt.Sprintf("pools[%d].advertise.peers[%d]", i, j)
			errs = append(errs, &Error{File: file, Line: pos.lineOf(field), Field: field,
				Msg: fmt.Sprintf("%s is not a neighbor in %s (a [[neighbors]] entry's neighbor-address, or neighbor-interface for an unnumbered one)", peer, gobgpFile)})
		}
	}
	return errs
}

// zebraEnabled reads [zebra.config] enabled from a gobgp.conf.
func zebraEnabled(gobgp []byte) bool {
	var f struct {
		Zebra struct {
			Config struct {
				Enabled bool `toml:"enabled"`
			} `toml:"config"`
		} `toml:"zebra"`
	}
	if err := toml.NewDecoder(bytes.NewReader(gobgp)).Decode(&f); err != nil {
		return false
	}
	return f.Zebra.Config.Enabled
}

// checkDirGoBGP is CheckWithGoBGP for the gobgp.conf in dir, if any.
func checkDirGoBGP(dir, file string, data []byte, c *Config) []error {
	gf := filepath.Join(dir, GoBGPFileName)
	gobgp, err := os.ReadFile(gf)
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		// unreadable: reported by whoever loads gobgp.conf
		return nil
	}
	return CheckWithGoBGP(file, data, c, gf, gobgp)
}
