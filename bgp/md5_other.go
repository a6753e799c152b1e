//go:build !linux

package bgp

import "errors"

func md5Supported() error { return errors.New("TCP_MD5SIG is only supported on Linux") }
