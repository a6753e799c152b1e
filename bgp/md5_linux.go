package bgp

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// md5Supported reports whether the kernel accepts TCP_MD5SIG on a TCP
// socket (CONFIG_TCP_MD5SIG). GoBGP only logs a warning when it cannot set a
// password, which would mean peering without the protection the operator
// asked for; we refuse instead.
func md5Supported() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe TCP_MD5SIG: %w", err)
	}
	defer unix.Close(fd)
	var sig unix.TCPMD5Sig
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sig.Addr))
	sa.Family = unix.AF_INET
	sa.Addr = [4]byte{198, 18, 0, 1}
	sig.Keylen = 4
	copy(sig.Key[:], "test")
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		if errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("kernel lacks TCP_MD5SIG (CONFIG_TCP_MD5SIG): %w", err)
		}
		return fmt.Errorf("probe TCP_MD5SIG: %w", err)
	}
	return nil
}
