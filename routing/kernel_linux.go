package routing

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nlKernel is the kernel interface over a netlink handle bound to one
// network namespace.
type nlKernel struct {
	h  *netlink.Handle
	ns netns.NsHandle // -1 (none) for the caller's namespace
}

func newKernel(netnsPath string) (kernel, error) {
	if netnsPath == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("open netlink handle: %w", err)
		}
		return &nlKernel{h: h, ns: netns.None()}, nil
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("open netlink handle in %s: %w", netnsPath, err)
	}
	return &nlKernel{h: h, ns: ns}, nil
}

func (k *nlKernel) close() error {
	k.h.Close()
	if k.ns.IsOpen() {
		return k.ns.Close()
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func (k *nlKernel) linkIndex(name string) (int, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("look up %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func (k *nlKernel) ensureLink(name, kind string) (int, string, bool, bool, error) {
	created := false
	l, err := k.h.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return 0, "", false, false, fmt.Errorf("look up %s: %w", name, err)
	}
	used := kind
	if l == nil {
		attrs := netlink.LinkAttrs{Name: name}
		var link netlink.Link = &netlink.Dummy{LinkAttrs: attrs}
		if kind == "ifb" {
			link = &netlink.Ifb{LinkAttrs: attrs}
		}
		err = k.h.LinkAdd(link)
		if err != nil && kind == "dummy" && errors.Is(err, unix.EOPNOTSUPP) {
			used = "ifb"
			err = k.h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, "", false, false, fmt.Errorf("create %s (%s): %w", name, used, err)
		}
		created = err == nil
		if l, err = k.h.LinkByName(name); err != nil {
			return 0, "", false, false, fmt.Errorf("look up %s after creating it: %w", name, err)
		}
	} else {
		used = l.Type()
	}
	setUp := false
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := k.h.LinkSetUp(l); err != nil {
			return 0, "", false, false, fmt.Errorf("set %s up: %w", name, err)
		}
		setUp = true
	}
	return l.Attrs().Index, used, created, setUp, nil
}

func (k *nlKernel) deleteLink(name string) error {
	l, err := k.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := k.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (k *nlKernel) listAddrs(index int) ([]netip.Addr, error) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}
	var (
		addrs []netlink.Addr
		err   error
	)
	// A dump interrupted by a concurrent change is retried a few times.
	for range 5 {
		addrs, err = k.h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses of interface %d: %w", index, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		bits, _ := a.Mask.Size()
		if isHostAddr(ip, bits) {
			out = append(out, ip)
		}
	}
	return out, nil
}

func toNetlinkAddr(a netip.Addr) *netlink.Addr {
	n := &netlink.Addr{IPNet: &net.IPNet{
		IP:   a.AsSlice(),
		Mask: net.CIDRMask(a.BitLen(), a.BitLen()),
	}}
	if a.Is6() {
		// A VIP is ours alone by construction: duplicate address
		// detection would only delay it.
		n.Flags = unix.IFA_F_NODAD
	}
	return n
}

func (k *nlKernel) addAddr(index int, a netip.Addr) error {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}
	if err := k.h.AddrAdd(link, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (k *nlKernel) delAddr(index int, a netip.Addr) error {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}
	err := k.h.AddrDel(link, toNetlinkAddr(a))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

func (k *nlKernel) watch(name string, stop <-chan struct{}) (<-chan change, error) {
	addrCh := make(chan netlink.AddrUpdate, 4096)
	linkCh := make(chan netlink.LinkUpdate, 64)
	errCh := make(chan error, 1)
	onErr := func(err error) {
		select {
		case errCh <- err:
		default:
		}
	}
	ns := k.ns
	nsp := &ns
	if !ns.IsOpen() {
		nsp = nil
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, stop, netlink.AddrSubscribeOptions{
		Namespace: nsp, ErrorCallback: onErr, ReceiveBufferSize: 8 << 20,
	}); err != nil {
		return nil, fmt.Errorf("subscribe to address events: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, stop, netlink.LinkSubscribeOptions{
		Namespace: nsp, ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	out := make(chan change, 4096)
	go func() {
		defer close(out)
		send := func(c change) bool {
			select {
			case out <- c:
				return true
			case <-stop:
				return false
			}
		}
		for {
			var c change
			select {
			case <-stop:
				return
			case <-errCh:
				c = change{Resync: true}
			case u, ok := <-addrCh:
				if !ok {
					// The subscription died (for example on
					// ENOBUFS); the table resyncs on a timer.
					addrCh = nil
					send(change{Resync: true})
					continue
				}
				ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
				if !ok {
					continue
				}
				ip = ip.Unmap()
				bits, _ := u.LinkAddress.Mask.Size()
				if !isHostAddr(ip, bits) {
					continue
				}
				c.Index = u.LinkIndex
				if u.NewAddr {
					c.AddrAdded = ip
				} else {
					c.AddrRemoved = ip
				}
			case u, ok := <-linkCh:
				if !ok {
					linkCh = nil
					send(change{Resync: true})
					continue
				}
				if u.Link == nil || u.Link.Attrs().Name != name {
					continue
				}
				c.Index = u.Link.Attrs().Index
				switch {
				case u.Header.Type == unix.RTM_DELLINK:
					c.LinkGone = true
				case u.Link.Attrs().Flags&net.FlagUp == 0:
					c.LinkDown = true
				default:
					continue
				}
			}
			if !send(c) {
				return
			}
		}
	}()
	return out, nil
}
