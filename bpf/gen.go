package bpf

// The flags are fixed here (not taken from the environment) so that a
// regeneration on any machine with the same clang gives the same object;
// check-generated.sh relies on that.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -strip llvm-strip -target bpfel,bpfeb -cflags "-O2 -g -Wall -Werror -Wno-address-of-packed-member -I./include -I/usr/include/x86_64-linux-gnu" vip xdp.c
